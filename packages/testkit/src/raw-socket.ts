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
