import type { Socket } from 'node:net';
import type { WebSocket } from 'ws';
import type { Transport, TransportEvents } from './transport.js';

/**
 * FPNN over WebSocket (spec/fpnn.md §5): one FPNN frame per binary message out; incoming binary
 * messages are treated as a byte stream (copes with split or joined frames). A text message is not
 * FPNN: the connection is closed.
 */
export class WebSocketTransport implements Transport {
  readonly kind = 'websocket' as const;
  private closed = false;
  private corked = false;
  private readonly socket: Socket | undefined;

  constructor(
    private readonly ws: WebSocket,
    readonly remote: string,
    private readonly onProtocolError: (reason: string) => void,
  ) {
    // ws writes every message with its own cork/uncork; holding our own cork for the rest of the
    // turn turns a fan-out's many messages to this socket into one writev.
    this.socket = (ws as unknown as { _socket?: Socket })._socket;
  }

  get bufferedBytes(): number {
    return this.socket ? this.socket.writableLength : this.ws.bufferedAmount;
  }

  private events: TransportEvents | undefined;

  start(events: TransportEvents): void {
    this.events = events;
    // Shared listeners (this = the WebSocket): no closures per connection.
    (this.ws as WebSocketWithTransport)[TRANSPORT] = this;
    this.ws.on('message', onMessage);
    this.ws.on('error', onError);
    this.ws.once('close', onClose);
  }

  /** @internal */
  received(data: Buffer | ArrayBuffer | Buffer[], isBinary: boolean): void {
    if (!isBinary) {
      this.onProtocolError('text WebSocket message: only binary FPNN frames are accepted');
      return;
    }
    if (Array.isArray(data)) for (const part of data) this.events!.onTransportData(part);
    else this.events!.onTransportData(data instanceof ArrayBuffer ? new Uint8Array(data) : data);
  }

  /** @internal */
  ended(): void {
    this.closed = true;
    this.events!.onTransportClose();
  }

  write(bytes: Uint8Array): void {
    if (this.closed) return;
    if (!this.socket) return void this.ws.send(bytes, SEND_OPTIONS);
    const head = headerLength(bytes.length);
    const frame = Buffer.allocUnsafe(head + bytes.length);
    writeHeader(frame, bytes.length);
    frame.set(bytes, head);
    this.send(frame);
  }

  writeWithSeq(template: Uint8Array, seq: number): number {
    if (this.closed) return 0;
    const head = headerLength(template.length);
    const frame = Buffer.allocUnsafe(head + template.length);
    writeHeader(frame, template.length);
    frame.set(template, head);
    frame.writeUInt32LE(seq >>> 0, head + 12);
    if (this.socket) this.send(frame);
    else this.ws.send(frame.subarray(head), SEND_OPTIONS);
    return frame.length;
  }

  /**
   * Our frames go straight to the socket as whole, unmasked binary WebSocket frames (RFC 6455
   * §5.2): ws's sender would cost two writes and an options pass per message. Safe because
   * permessage-deflate is off, so ws never queues frames of its own; its control frames (pong,
   * close) are whole frames written to the same stream. The socket stays corked for the rest of
   * the turn, so a fan-out's many frames to one socket leave in one writev.
   */
  private send(frame: Buffer): void {
    const socket = this.socket!;
    if (!this.corked) {
      this.corked = true;
      socket.cork();
      process.nextTick(uncork, this);
    }
    socket.write(frame);
  }

  /** @internal */
  uncork(): void {
    this.corked = false;
    this.socket?.uncork();
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.ws.close(1000);
    setTimeout(() => this.ws.terminate(), 2000).unref();
  }
}

const SEND_OPTIONS = { binary: true } as const;
const TRANSPORT = Symbol('rtm.transport');
type WebSocketWithTransport = WebSocket & { [TRANSPORT]?: WebSocketTransport };

function onMessage(this: WebSocketWithTransport, data: Buffer | ArrayBuffer | Buffer[], isBinary: boolean): void {
  this[TRANSPORT]!.received(data, isBinary);
}

function onError(this: WebSocketWithTransport): void {
  this.terminate();
}

function onClose(this: WebSocketWithTransport): void {
  this[TRANSPORT]!.ended();
}

function uncork(t: WebSocketTransport): void {
  t.uncork();
}

function headerLength(payload: number): number {
  return payload < 126 ? 2 : payload < 65536 ? 4 : 10;
}

/** FIN + binary opcode, unmasked, with the payload length in its 7, 16 or 64-bit form. */
function writeHeader(frame: Buffer, payload: number): void {
  frame[0] = 0x82;
  if (payload < 126) frame[1] = payload;
  else if (payload < 65536) {
    frame[1] = 126;
    frame.writeUInt16BE(payload, 2);
  } else {
    frame[1] = 127;
    frame.writeUInt32BE(Math.floor(payload / 2 ** 32), 2);
    frame.writeUInt32BE(payload >>> 0, 6);
  }
}
