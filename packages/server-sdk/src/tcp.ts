import { connect as netConnect, type Socket } from 'node:net';
import {
  encodePayload,
  encodeQuest,
  Flag,
  FpnnErrorCode,
  FpnnPeer,
  FrameDecoder,
  RtmError,
  type IncomingQuest,
  type QuestHandler,
} from '@rtm/fpnn';
import { clientKeyExchange, type ClientKeyExchange, type FrameCipher } from '@rtm/fpnn/crypto';
import type { EncryptionOptions } from './options.js';

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
  /** Encrypt with `*key` right after connecting (fpnn.md §6). */
  encryption?: Readonly<EncryptionOptions> | undefined;
  /** Aborts opening: the socket is destroyed, the connect timer cleared, and `open` rejects with the abort reason. */
  signal?: AbortSignal | undefined;
}

/** The client half of `*key` for these options. Throws a `TypeError` when the server key is unusable. */
export function startKeyExchange(encryption: Readonly<EncryptionOptions>): ClientKeyExchange {
  return clientKeyExchange(encryption.serverPublicKey, {
    curve: encryption.curve === 'secp256r1' ? 'prime256v1' : (encryption.curve ?? 'secp256k1'),
    bits: encryption.bits ?? 128,
    streamMode: encryption.streamMode ?? false,
  });
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
  /** Set once `*key` is sent: every later frame both ways goes through it. */
  cipher: FrameCipher | undefined;

  private constructor(
    private readonly socket: Socket,
    options: TcpConnectionOptions,
  ) {
    this.peer = new FpnnPeer({
      write: (frame) => this.write(frame),
      onQuest: options.onQuest,
      questTimeoutMs: options.questTimeoutMs,
      onInternalError: options.onInternalError,
    });
    this.closed = new Promise((resolve) => socket.once('close', () => resolve()));
  }

  private corked = false;

  /**
   * Frames written in one event-loop turn leave in one syscall: a pipelined caller that sends many
   * quests in a turn (say, as a batch of answers comes in) pays one writev, not one write each.
   */
  private write(frame: Uint8Array): void {
    const socket = this.socket;
    if (socket.destroyed) return;
    if (!this.corked) {
      this.corked = true;
      socket.cork();
      process.nextTick(uncork, this);
    }
    socket.write(this.cipher ? this.cipher.encrypt(frame) : frame);
  }

  /** @internal */
  uncork(): void {
    this.corked = false;
    this.socket.uncork();
  }

  /**
   * Opens a connection; rejects with RtmError 20012 (refused, unreachable, encryption failed) or
   * 20003 (timeout), or with the abort reason when `options.signal` aborts first.
   */
  static open(options: TcpConnectionOptions): Promise<TcpConnection> {
    return new Promise((resolve, reject) => {
      const signal = options.signal;
      if (signal?.aborted) return reject(abortError(signal));
      const socket = netConnect({ host: options.host, port: options.port });
      const decoder = new FrameDecoder();
      let opened: TcpConnection | undefined;
      let failure: RtmError | undefined;
      // One deadline for the whole open: the TCP connect and, with encryption, the `*key` exchange.
      const timer = setTimeout(() => {
        failure = new RtmError(
          FpnnErrorCode.CORE_TIMEOUT,
          `connecting to ${options.host}:${options.port} timed out after ${options.connectTimeoutMs} ms`,
        );
        if (opened) opened.close(failure.message);
        else socket.destroy();
      }, options.connectTimeoutMs);
      // Aborted (the client's close()): destroy the socket now rather than keep it and the connect
      // timer, and with them the process, for up to connectTimeoutMs; its 'close' then rejects.
      const aborted = (): void => {
        failure ??= abortError(signal!);
        if (opened) opened.close(failure.message);
        else socket.destroy();
      };
      signal?.addEventListener('abort', aborted);
      const succeed = (connection: TcpConnection): void => {
        clearTimeout(timer);
        signal?.removeEventListener('abort', aborted);
        resolve(connection);
      };
      const fail = (err: RtmError): void => {
        signal?.removeEventListener('abort', aborted);
        reject(err);
      };

      socket.once('connect', () => {
        socket.setNoDelay(true);
        let kx: ClientKeyExchange | undefined;
        try {
          kx = options.encryption && startKeyExchange(options.encryption);
        } catch (err) {
          // An unusable server key fails this attempt (connect() rejects); thrown from this
          // listener it would be an uncaught exception.
          failure = new RtmError(
            FpnnErrorCode.CORE_INVALID_CONNECTION,
            `encryption with ${options.host}:${options.port} cannot start: ${(err as Error).message}`,
            { cause: err },
          );
          socket.destroy();
          return;
        }
        opened = new TcpConnection(socket, options);
        if (!kx) return succeed(opened);
        // *key goes in plaintext; its answer and everything after it are encrypted both ways.
        const seq = opened.peer.allocSeq();
        const c = opened;
        // The open's deadline (timer) comes first; this one only keeps the quest bounded.
        const answered = c.peer.expectAnswer(seq, '*key', options.connectTimeoutMs);
        socket.write(encodeQuest('*key', encodePayload(Flag.MSGPACK, kx.questPayload), Flag.MSGPACK, false, seq));
        c.cipher = kx.ciphers;
        answered.then(
          () => succeed(c),
          (err: unknown) => {
            const error =
              failure ??
              new RtmError(
                FpnnErrorCode.CORE_INVALID_CONNECTION,
                `encryption handshake with ${options.host}:${options.port} failed: ${(err as Error).message}`,
              );
            c.close('encryption handshake failed');
            // As for every failed attempt: reject once the socket is gone, not while it is closing.
            void c.closed.then(() => fail(error));
          },
        );
      });
      socket.on('data', (chunk: Buffer) => {
        if (!opened) return;
        try {
          const plain = opened.cipher ? opened.cipher.decrypt(chunk) : [chunk];
          for (const bytes of plain) for (const frame of decoder.push(bytes)) opened.peer.receive(frame);
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
          fail(failure ?? new RtmError(FpnnErrorCode.CORE_INVALID_CONNECTION, `cannot connect to ${options.host}:${options.port}`));
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

function abortError(signal: AbortSignal): RtmError {
  const reason: unknown = signal.reason;
  return reason instanceof RtmError ? reason : new RtmError(FpnnErrorCode.CORE_INVALID_CONNECTION, 'connecting was aborted');
}

function uncork(connection: TcpConnection): void {
  connection.uncork();
}
