import {
  connectionClosedError,
  FpnnErrorCode,
  FpnnPeer,
  FrameDecoder,
  RtmError,
  type IncomingQuest,
  type Payload,
  type QuestHandler,
} from '@rtm/fpnn';
import type { Logger } from './options.js';
import { messageBytes, type WebSocketFactory, type WebSocketLike } from './transport.js';

const OPEN = 1;
const CLOSING = 2;
const CLOSED = 3;

export interface ConnectionSettings {
  readonly url: string;
  readonly factory: WebSocketFactory;
  readonly connectTimeoutMs: number;
  readonly questTimeoutMs: number;
  readonly logger: Logger;
  /** Serves quests the server sends (pushes). */
  readonly onQuest: QuestHandler;
  /**
   * Called once when the connection is gone. `byUs` is true only for `close()`: a socket closed by
   * the server or the network, and a protocol error in what the server sent, are both losses.
   */
  readonly onClose: (reason: string, byUs: boolean) => void;
  /** Aborts opening: the WebSocket is closed, the connect timer cleared, and `open` rejects with the abort reason. */
  readonly signal?: AbortSignal;
}

/**
 * One FPNN connection over one WebSocket (fpnn.md §5): every quest goes out as one binary message;
 * received messages are fed to a `FrameDecoder` as a byte stream, so frames split across or joined
 * within messages are handled too. A framing error closes the connection.
 */
export class Connection {
  private readonly decoder = new FrameDecoder();
  private readonly peer: FpnnPeer;
  private closedReason: string | undefined;

  private constructor(
    private readonly ws: WebSocketLike,
    private readonly settings: ConnectionSettings,
  ) {
    this.peer = new FpnnPeer({
      questTimeoutMs: settings.questTimeoutMs,
      write: (frame) => {
        if (this.closedReason !== undefined || ws.readyState !== OPEN) throw new Error('the WebSocket is not open');
        ws.send(frame);
      },
      onQuest: settings.onQuest,
      onInternalError: (err, quest) => settings.logger.error?.(`push '${quest.method}' handler failed`, err),
    });
    ws.onmessage = (event) => this.receive(event.data);
    ws.onerror = (event) => settings.logger.debug?.('WebSocket error', (event as { message?: unknown })?.message ?? event);
    ws.onclose = (event) =>
      this.finish(`WebSocket closed (code ${event?.code ?? 'unknown'}${event?.reason ? `: ${event.reason}` : ''})`, false);
  }

  /**
   * Opens the WebSocket; rejects with an `RtmError` (20012 or 20003) when it cannot, or with the
   * signal's reason when `settings.signal` aborts first. The connect timeout and the signal cover
   * the factory too (an async one may wait on anything).
   */
  static async open(settings: ConnectionSettings): Promise<Connection> {
    return new Connection(await openWebSocket(settings), settings);
  }

  get isOpen(): boolean {
    return this.closedReason === undefined;
  }

  /** Sends a twoway quest; rejects with an `RtmError` (error answer, timeout 20003, closed 20002). */
  quest(method: string, payload: Payload, timeoutMs?: number): Promise<Payload> {
    if (this.closedReason !== undefined) return Promise.reject(connectionClosedError(this.closedReason));
    // The server has begun closing it (its close event is on the way): lost, not a send error.
    if (this.ws.readyState !== OPEN) return Promise.reject(connectionClosedError('the WebSocket is closing'));
    return this.peer.quest(method, payload, timeoutMs === undefined ? {} : { timeoutMs });
  }

  /** Closes the connection; pending quests reject with 20002. Idempotent. */
  close(reason = 'closed by the client'): void {
    if (this.closedReason !== undefined) return;
    safeClose(this.ws);
    this.finish(reason, true);
  }

  private receive(data: unknown): void {
    if (this.closedReason !== undefined) return;
    const bytes = messageBytes(data);
    if (!bytes) {
      this.settings.logger.warn?.('ignoring a WebSocket message of unknown type', typeof data);
      return;
    }
    let frames;
    try {
      frames = this.decoder.push(bytes);
    } catch (err) {
      // The server broke the framing: the connection is unusable, and that is a loss (relogin),
      // not a close the application asked for.
      this.settings.logger.error?.('protocol error from the server, closing', err);
      safeClose(this.ws);
      this.finish(`protocol error: ${(err as Error).message}`, false);
      return;
    }
    for (const frame of frames) this.peer.receive(frame);
  }

  private finish(reason: string, byUs: boolean): void {
    if (this.closedReason !== undefined) return;
    this.closedReason = reason;
    this.ws.onmessage = this.ws.onclose = null;
    this.ws.onerror = ignore; // a late error must not become an unhandled 'error' event in ws
    this.peer.close(reason);
    this.settings.onClose(reason, byUs);
  }
}

function ignore(): void {}

function openWebSocket(settings: ConnectionSettings): Promise<WebSocketLike> {
  const { url, signal } = settings;
  return new Promise<WebSocketLike>((resolve, reject) => {
    let ws: WebSocketLike | undefined;
    let settled = false;
    const settle = (): void => {
      settled = true;
      clearTimeout(timer);
      signal?.removeEventListener('abort', aborted);
      if (!ws) return;
      ws.onopen = ws.onclose = null;
      ws.onerror = ignore; // with `ws`, an 'error' event without a listener would throw
    };
    const fail = (err: unknown): void => {
      if (settled) return;
      settle();
      // close() of the session must not leave this socket behind (it would keep a Node process
      // alive until the server answers).
      if (ws) safeClose(ws);
      reject(err);
    };
    const opened = (): void => {
      if (settled) return;
      settle();
      resolve(ws!);
    };
    const timer = setTimeout(
      () => fail(new RtmError(FpnnErrorCode.CORE_TIMEOUT, `connecting to ${url} took longer than ${settings.connectTimeoutMs} ms`)),
      settings.connectTimeoutMs,
    );
    const aborted = (): void => fail(abortError(signal!));
    if (signal?.aborted) return aborted();
    signal?.addEventListener('abort', aborted);
    const cannotCreate = (err: unknown): void =>
      fail(
        new RtmError(FpnnErrorCode.CORE_INVALID_CONNECTION, `cannot create a WebSocket for ${url}: ${(err as Error)?.message}`, {
          cause: err,
        }),
      );
    let made: WebSocketLike | Promise<WebSocketLike>;
    try {
      made = settings.factory(url);
    } catch (err) {
      return cannotCreate(err);
    }
    Promise.resolve(made).then((socket) => {
      if (settled) return safeClose(socket); // cancelled or timed out while the factory worked
      ws = socket;
      ws.binaryType = 'arraybuffer';
      // A factory may hand over a socket it has already opened (or one that died meanwhile).
      if (ws.readyState === OPEN) return opened();
      if (ws.readyState === CLOSING || ws.readyState === CLOSED)
        return fail(
          new RtmError(FpnnErrorCode.CORE_INVALID_CONNECTION, `cannot connect to ${url}: the WebSocket given was already closed`),
        );
      ws.onopen = opened;
      ws.onerror = ws.onclose = (event: unknown) => {
        const { message, error } = (event ?? {}) as { message?: unknown; error?: unknown };
        // Node's `ws` says why (a refused connection, a certificate it does not trust, an HTTP
        // status); a browser's error event never does.
        const why = typeof message === 'string' && message !== '' ? `: ${message}` : '';
        fail(
          new RtmError(
            FpnnErrorCode.CORE_INVALID_CONNECTION,
            `cannot connect to ${url}${why}`,
            error === undefined ? undefined : { cause: error },
          ),
        );
      };
    }, cannotCreate);
  });
}

function abortError(signal: AbortSignal): RtmError {
  const reason: unknown = signal.reason;
  return reason instanceof RtmError ? reason : new RtmError(FpnnErrorCode.CORE_CANCELLED, 'connecting was cancelled');
}

/** How long a closing handshake may take before the socket is cut (`ws` only). */
const CLOSE_HANDSHAKE_MS = 1000;

/**
 * Closes without depending on the peer. With no 'error' listener, `ws` turns the abort of a socket
 * still connecting into an unhandled 'error' event (a crash); and its closing handshake, over a
 * dead network, keeps the socket and a 30 s timer (the process with them) until the peer answers:
 * after `CLOSE_HANDSHAKE_MS` the socket is cut with `terminate()`. Browsers have neither problem.
 */
function safeClose(ws: WebSocketLike): void {
  ws.onerror = ignore;
  try {
    ws.close();
  } catch {
    // closing a socket that never opened can throw in some implementations
  }
  const terminate = (ws as { terminate?: unknown }).terminate;
  if (typeof terminate !== 'function' || ws.readyState === CLOSED) return;
  const timer = setTimeout(() => {
    if (ws.readyState !== CLOSED) (terminate as () => void).call(ws);
  }, CLOSE_HANDSHAKE_MS);
  (timer as { unref?: () => void }).unref?.();
}

export type { IncomingQuest };
