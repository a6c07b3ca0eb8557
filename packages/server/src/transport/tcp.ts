import type { Socket } from 'node:net';
import type { Transport, TransportEvents } from './transport.js';

/**
 * FPNN over TCP. Writes issued in one event-loop turn are corked together into one syscall,
 * which is what makes pipelined quests cheap.
 */
export class TcpTransport implements Transport {
  readonly kind = 'tcp' as const;
  readonly receiving = false;
  private corked = false;
  private closed = false;

  constructor(
    private readonly socket: Socket,
    /** The peer: the socket's own, or the client a balancer's PROXY header named. */
    readonly remote: string,
    private firstChunk?: Uint8Array,
    readonly tls = false,
  ) {
    socket.setNoDelay(true);
  }

  get bufferedBytes(): number {
    return this.socket.writableLength;
  }

  limitMessageBytes(): void {
    // A TCP stream has no messages: the FPNN decoder bounds its frames.
  }

  private events: TransportEvents | undefined;

  start(events: TransportEvents): void {
    this.events = events;
    // Shared listeners (this = the socket): no closures per connection.
    (this.socket as SocketWithTransport)[TRANSPORT] = this;
    this.socket.on('data', onData);
    this.socket.on('error', onError);
    this.socket.once('close', onClose);
    const first = this.firstChunk;
    this.firstChunk = undefined;
    if (first && first.length > 0) events.onTransportData(first);
    this.socket.resume();
  }

  /** @internal */
  received(chunk: Buffer): void {
    this.events!.onTransportData(chunk);
  }

  /** @internal */
  ended(): void {
    this.closed = true;
    this.events!.onTransportClose();
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

const TRANSPORT = Symbol('rtm.transport');
type SocketWithTransport = Socket & { [TRANSPORT]?: TcpTransport };

function onData(this: SocketWithTransport, chunk: Buffer): void {
  this[TRANSPORT]!.received(chunk);
}

function onError(this: SocketWithTransport): void {
  this.destroy();
}

function onClose(this: SocketWithTransport): void {
  this[TRANSPORT]!.ended();
}
