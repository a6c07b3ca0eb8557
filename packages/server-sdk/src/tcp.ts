import { connect as netConnect, type Socket } from 'node:net';
import { FpnnErrorCode, FpnnPeer, FrameDecoder, RtmError, type IncomingQuest, type QuestHandler } from '@rtm/fpnn';

export interface TcpConnectionOptions {
  host: string;
  port: number;
  connectTimeoutMs: number;
  questTimeoutMs: number;
  /** Serves the server's quests (pushes). */
  onQuest: QuestHandler;
  /** Called once when an opened connection closes, with the reason. */
  onClose(reason: string): void;
  onInternalError(err: unknown, quest: IncomingQuest): void;
}

/**
 * One TCP connection to the server gate: a socket, an incremental frame decoder and an FpnnPeer.
 * It only moves frames; reconnecting is the caller's business.
 */
export class TcpConnection {
  readonly peer: FpnnPeer;
  /** Resolves when the socket is fully closed. */
  readonly closed: Promise<void>;
  private closeReason: string | undefined;

  private constructor(
    private readonly socket: Socket,
    options: TcpConnectionOptions,
  ) {
    this.peer = new FpnnPeer({
      write: (frame) => {
        if (!socket.destroyed) socket.write(frame);
      },
      onQuest: options.onQuest,
      questTimeoutMs: options.questTimeoutMs,
      onInternalError: options.onInternalError,
    });
    this.closed = new Promise((resolve) => socket.once('close', () => resolve()));
  }

  /** Opens a connection; rejects with RtmError 20012 (refused, unreachable) or 20003 (timeout). */
  static open(options: TcpConnectionOptions): Promise<TcpConnection> {
    return new Promise((resolve, reject) => {
      const socket = netConnect({ host: options.host, port: options.port });
      const decoder = new FrameDecoder();
      let opened: TcpConnection | undefined;
      let failure: RtmError | undefined;
      const timer = setTimeout(() => {
        failure = new RtmError(
          FpnnErrorCode.CORE_TIMEOUT,
          `connecting to ${options.host}:${options.port} timed out after ${options.connectTimeoutMs} ms`,
        );
        socket.destroy();
      }, options.connectTimeoutMs);

      socket.once('connect', () => {
        clearTimeout(timer);
        socket.setNoDelay(true);
        opened = new TcpConnection(socket, options);
        resolve(opened);
      });
      socket.on('data', (chunk: Buffer) => {
        if (!opened) return;
        try {
          for (const frame of decoder.push(chunk)) opened.peer.receive(frame);
        } catch (err) {
          opened.close(`protocol error: ${(err as Error).message}`);
        }
      });
      socket.on('error', (err) => {
        if (opened) opened.closeReason ??= `socket error: ${err.message}`;
        else
          failure ??= new RtmError(
            FpnnErrorCode.CORE_INVALID_CONNECTION,
            `cannot connect to ${options.host}:${options.port}: ${err.message}`,
            { cause: err },
          );
      });
      socket.once('close', () => {
        clearTimeout(timer);
        if (!opened) {
          reject(failure ?? new RtmError(FpnnErrorCode.CORE_INVALID_CONNECTION, `cannot connect to ${options.host}:${options.port}`));
          return;
        }
        const reason = opened.closeReason ?? 'closed by the server';
        opened.peer.close(reason);
        options.onClose(reason);
      });
    });
  }

  get isOpen(): boolean {
    return !this.socket.destroyed && !this.peer.closed;
  }

  /** Closes the socket at once; pending quests fail with 20002. */
  close(reason: string): void {
    this.closeReason ??= reason;
    this.peer.close(this.closeReason);
    this.socket.destroy();
  }
}
