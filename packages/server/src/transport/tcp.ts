import type { Socket } from 'node:net';
import type { Transport, TransportEvents } from './transport.js';

/**
 * FPNN over TCP. Writes issued in one event-loop turn are corked together into one syscall,
 * which is what makes pipelined quests cheap.
 */
export class TcpTransport implements Transport {
  readonly kind = 'tcp' as const;
  readonly remote: string;
  private corked = false;
  private closed = false;

  constructor(private readonly socket: Socket, private readonly firstChunk?: Uint8Array) {
    this.remote = `${socket.remoteAddress}:${socket.remotePort}`;
    socket.setNoDelay(true);
  }

  get bufferedBytes(): number {
    return this.socket.writableLength;
  }

  start(events: TransportEvents): void {
    this.socket.on('data', (chunk: Buffer) => events.data(chunk));
    this.socket.on('error', () => this.socket.destroy());
    this.socket.once('close', () => {
      this.closed = true;
      events.close();
    });
    if (this.firstChunk && this.firstChunk.length > 0) events.data(this.firstChunk);
    this.socket.resume();
  }

  write(bytes: Uint8Array): void {
    if (this.closed) return;
    if (!this.corked) {
      this.corked = true;
      this.socket.cork();
      process.nextTick(() => {
        this.corked = false;
        this.socket.uncork();
      });
    }
    this.socket.write(bytes);
  }

  writeWithSeq(template: Uint8Array, seq: number): number {
    const frame = Buffer.allocUnsafe(template.length);
    frame.set(template);
    frame.writeUInt32LE(seq >>> 0, 12);
    this.write(frame);
    return frame.length;
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.socket.end();
    // Do not wait forever for a peer that does not read: destroy after a grace period.
    setTimeout(() => this.socket.destroy(), 2000).unref();
  }
}
