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
    return this.ws.bufferedAmount;
  }

  start(events: TransportEvents): void {
    this.ws.on('message', (data: Buffer | ArrayBuffer | Buffer[], isBinary: boolean) => {
      if (!isBinary) {
        this.onProtocolError('text WebSocket message: only binary FPNN frames are accepted');
        return;
      }
      if (Array.isArray(data)) for (const part of data) events.data(part);
      else events.data(data instanceof ArrayBuffer ? new Uint8Array(data) : data);
    });
    this.ws.on('error', () => this.ws.terminate());
    this.ws.once('close', () => {
      this.closed = true;
      events.close();
    });
  }

  write(bytes: Uint8Array): void {
    if (this.closed) return;
    if (!this.corked && this.socket) {
      this.corked = true;
      this.socket.cork();
      process.nextTick(uncork, this);
    }
    this.ws.send(bytes, SEND_OPTIONS);
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

function uncork(t: WebSocketTransport): void {
  t.uncork();
}
