import { randomBytes } from 'node:crypto';
import { connect, type Socket } from 'node:net';
import { FrameDecoder, type Frame } from '@rtm/fpnn';

/** A plain TCP socket to a gate, for tests that write bytes by hand: what came back, and whether the server closed it. */
export interface RecordingSocket {
  socket: Socket;
  /** Every byte received so far. */
  received(): Buffer;
  /** The frames received so far (every byte so far must be whole frames of plain FPNN). */
  frames(): Frame[];
  closed(): boolean;
}

export async function recordingSocket(port: number, host = '127.0.0.1'): Promise<RecordingSocket> {
  const socket = connect(port, host);
  const chunks: Buffer[] = [];
  let isClosed = false;
  socket.on('data', (d) => chunks.push(d));
  socket.on('error', () => undefined);
  socket.on('close', () => (isClosed = true));
  await new Promise((r) => socket.once('connect', r));
  return {
    socket,
    received: () => Buffer.concat(chunks),
    frames: () => new FrameDecoder().push(Buffer.concat(chunks)),
    closed: () => isClosed,
  };
}

/**
 * A client WebSocket frame written by hand (RFC 6455 §5.2): FIN + opcode, masked unless `masked`
 * is false, with whichever length form the payload needs.
 */
export function webSocketClientFrame(
  opcode: number,
  payload: Uint8Array,
  options: { fin?: boolean; masked?: boolean; key?: number } = {},
): Buffer {
  const { fin = true, masked = true, key = 0x5a3c9f12 } = options;
  const len = payload.length;
  const lenBytes = len < 126 ? 0 : len < 65536 ? 2 : 8;
  const head = Buffer.alloc(2 + lenBytes + (masked ? 4 : 0));
  head[0] = (fin ? 0x80 : 0) | opcode;
  head[1] = (masked ? 0x80 : 0) | (len < 126 ? len : len < 65536 ? 126 : 127);
  if (lenBytes === 2) head.writeUInt16BE(len, 2);
  if (lenBytes === 8) head.writeBigUInt64BE(BigInt(len), 2);
  const body = Buffer.from(payload);
  if (masked) {
    head.writeUInt32BE(key >>> 0, 2 + lenBytes);
    for (let i = 0; i < len; i++) body[i] = body[i]! ^ head[2 + lenBytes + (i & 3)]!;
  }
  return Buffer.concat([head, body]);
}

/** The server's (unmasked) WebSocket frames in `bytes`, named `binary(n)`, `text(n)`, `close(code)`, `ping(n)`, … */
export function webSocketServerFrames(bytes: Buffer): string[] {
  const names: Record<number, string> = { 0: 'continuation', 1: 'text', 2: 'binary', 9: 'ping', 10: 'pong' };
  const out: string[] = [];
  let at = 0;
  while (at + 2 <= bytes.length) {
    const opcode = bytes[at]! & 0x0f;
    let len = bytes[at + 1]! & 0x7f;
    let head = 2;
    if (len === 126) [len, head] = [bytes.readUInt16BE(at + 2), 4];
    else if (len === 127) [len, head] = [Number(bytes.readBigUInt64BE(at + 2)), 10];
    const payload = bytes.subarray(at + head, at + head + len);
    out.push(opcode === 8 ? `close(${payload.length >= 2 ? payload.readUInt16BE(0) : ''})` : `${names[opcode] ?? `op${opcode}`}(${len})`);
    at += head + len;
  }
  return out;
}

/** A WebSocket opened by hand on a client gate (`/service/websocket`): what came after the handshake. */
export interface RawWebSocket {
  socket: Socket;
  /** The bytes received after the 101 answer. */
  received(): Buffer;
  /** Those bytes as frames (`webSocketServerFrames`). */
  frames(): string[];
  closed(): boolean;
}

export async function rawWebSocket(port: number, host = '127.0.0.1'): Promise<RawWebSocket> {
  const raw = await recordingSocket(port, host);
  raw.socket.write(
    'GET /service/websocket HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n' +
      `Sec-WebSocket-Key: ${randomBytes(16).toString('base64')}\r\nSec-WebSocket-Version: 13\r\n\r\n`,
  );
  const deadline = Date.now() + 5000;
  while (!raw.received().includes('\r\n\r\n')) {
    if (raw.closed() || Date.now() > deadline) throw new Error('rawWebSocket: no handshake answer');
    await new Promise((r) => setTimeout(r, 5));
  }
  const received = (): Buffer => {
    const all = raw.received();
    return all.subarray(all.indexOf('\r\n\r\n') + 4);
  };
  return { socket: raw.socket, received, frames: () => webSocketServerFrames(received()), closed: raw.closed };
}
