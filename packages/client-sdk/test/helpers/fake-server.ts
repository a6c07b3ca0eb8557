/**
 * A small fake RTM client gate: FPNN over WebSocket on 127.0.0.1 (ephemeral port), path
 * /service/websocket, built from the protocol package's FrameDecoder and FpnnPeer. It records every
 * quest (decoded and as raw bytes), answers through per-method handlers, and can push, drop and
 * kick out. Only for tests of the client SDK while the real server is being written.
 */
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { FpnnPeer, FrameDecoder, RtmError, FpnnErrorCode, type Payload, type IncomingQuest } from '@rtm/fpnn';
import { WebSocketServer, type WebSocket } from 'ws';
import type { RTMClient, RTMClientEvents } from '../../src/index.js';

export interface RecordedQuest {
  readonly method: string;
  readonly payload: Payload;
  /** The whole frame exactly as received (one WebSocket message). */
  readonly raw: Uint8Array;
  readonly seq: number;
  readonly connection: FakeConnection;
}

/** Answers one quest: return the answer payload, throw an RtmError for an error answer. */
export type FakeHandler = (payload: Payload, connection: FakeConnection) => Payload | Promise<Payload>;

export class FakeConnection {
  readonly peer: FpnnPeer;
  readonly decoder = new FrameDecoder();
  uid: bigint | undefined;
  closed = false;
  /** Raw bytes of every WebSocket message received on this connection. */
  readonly rawMessages: Uint8Array[] = [];
  currentRaw: Uint8Array = new Uint8Array();
  private readonly closeWaiters: (() => void)[] = [];

  constructor(
    readonly ws: WebSocket,
    server: FakeRtmServer,
  ) {
    this.peer = new FpnnPeer({
      write: (frame) => ws.send(frame),
      questTimeoutMs: 2000,
      onQuest: (quest: IncomingQuest) => server.serve(quest, this),
    });
    ws.on('message', (data: Buffer) => {
      const bytes = new Uint8Array(data.buffer, data.byteOffset, data.byteLength).slice();
      this.rawMessages.push(bytes);
      for (const frame of this.decoder.push(bytes)) {
        // FpnnPeer calls onQuest synchronously from receive(), so serve() sees these bytes.
        this.currentRaw = bytes;
        this.peer.receive(frame);
      }
    });
    ws.on('close', () => {
      this.closed = true;
      this.peer.close('client went away');
      for (const w of this.closeWaiters.splice(0)) w();
    });
    ws.on('error', () => {});
  }

  /** Sends a twoway push and resolves with the client's answer payload. */
  push(method: string, payload: Payload): Promise<Payload> {
    return this.peer.quest(method, payload);
  }

  pushOneway(method: string, payload: Payload): void {
    this.peer.oneway(method, payload);
  }

  /** Writes bytes as one binary WebSocket message. */
  sendRaw(bytes: Uint8Array): void {
    this.ws.send(bytes);
  }

  /** Drops the TCP connection without a close handshake (a network failure). */
  drop(): void {
    this.ws.terminate();
  }

  waitClosed(): Promise<void> {
    if (this.closed) return Promise.resolve();
    return new Promise((resolve) => this.closeWaiters.push(resolve));
  }
}

export interface FakeServerOptions {
  /** Tokens accepted per uid (decimal string key); `auth` answers {ok:false} for others. */
  tokens?: Record<string, string>;
}

export class FakeRtmServer {
  readonly quests: RecordedQuest[] = [];
  readonly connections: FakeConnection[] = [];
  /** Per-method answers; replace entries in a test. */
  readonly handlers: Record<string, FakeHandler>;
  private waiters: { match: (q: RecordedQuest) => boolean; resolve: (q: RecordedQuest) => void }[] = [];
  private connectionWaiters: { count: number; resolve: () => void }[] = [];

  private constructor(
    private readonly http: Server,
    private readonly wss: WebSocketServer,
    options: FakeServerOptions,
  ) {
    const tokens = options.tokens ?? { '1001': 'token-1001', '1002': 'token-1002' };
    this.handlers = {
      auth: (p, conn) => {
        const ok = tokens[String(p.uid)] === p.token;
        if (ok) conn.uid = BigInt(p.uid as bigint);
        return { ok };
      },
      bye: () => ({}),
    };
    wss.on('connection', (ws) => {
      const conn = new FakeConnection(ws, this);
      this.connections.push(conn);
      this.connectionWaiters = this.connectionWaiters.filter((w) => {
        if (this.connections.length < w.count) return true;
        w.resolve();
        return false;
      });
    });
  }

  static async start(options: FakeServerOptions = {}): Promise<FakeRtmServer> {
    const http = createServer((_req, res) => res.writeHead(404).end());
    const wss = new WebSocketServer({ server: http, path: '/service/websocket' });
    await new Promise<void>((resolve) => http.listen(0, '127.0.0.1', resolve));
    return new FakeRtmServer(http, wss, options);
  }

  get port(): number {
    return (this.http.address() as AddressInfo).port;
  }

  /** "127.0.0.1:<port>", the SDK's `endpoint` form. */
  get endpoint(): string {
    return `127.0.0.1:${this.port}`;
  }

  /** The newest connection. */
  get last(): FakeConnection {
    const conn = this.connections[this.connections.length - 1];
    if (!conn) throw new Error('no connection yet');
    return conn;
  }

  /** Quests received with this method, in order. */
  received(method: string): RecordedQuest[] {
    return this.quests.filter((q) => q.method === method);
  }

  /** Resolves with the n-th (1-based) quest of `method`, now or when it arrives. */
  waitForQuest(method: string, n = 1, timeoutMs = 3000): Promise<RecordedQuest> {
    const have = this.received(method);
    if (have.length >= n) return Promise.resolve(have[n - 1]!);
    return withTimeout(
      new Promise<RecordedQuest>((resolve) => {
        this.waiters.push({ match: (q) => q.method === method && this.received(method).length >= n, resolve });
      }),
      timeoutMs,
      `waiting for quest '${method}' #${n}`,
    );
  }

  waitForConnections(count: number, timeoutMs = 3000): Promise<void> {
    if (this.connections.length >= count) return Promise.resolve();
    return withTimeout(
      new Promise<void>((resolve) => this.connectionWaiters.push({ count, resolve })),
      timeoutMs,
      `waiting for ${count} connections`,
    );
  }

  serve(quest: IncomingQuest, connection: FakeConnection): Payload | Promise<Payload> {
    const recorded: RecordedQuest = {
      method: quest.method,
      payload: quest.payload,
      raw: connection.currentRaw,
      seq: quest.seq,
      connection,
    };
    this.quests.push(recorded);
    this.waiters = this.waiters.filter((w) => {
      if (!w.match(recorded)) return true;
      w.resolve(recorded);
      return false;
    });
    const handler = this.handlers[quest.method];
    if (!handler) throw new RtmError(FpnnErrorCode.CORE_UNKNOWN_METHOD, `fake server: no handler for '${quest.method}'`);
    return handler(quest.payload, connection);
  }

  /** Closes every connection and the listener. */
  async close(): Promise<void> {
    for (const conn of this.connections) conn.ws.terminate();
    await new Promise<void>((resolve) => this.wss.close(() => resolve()));
    this.http.closeAllConnections();
    await new Promise<void>((resolve) => this.http.close(() => resolve()));
  }
}

export async function withTimeout<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  try {
    return await Promise.race([
      promise,
      new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms: ${what}`)), ms);
      }),
    ]);
  } finally {
    clearTimeout(timer);
  }
}

/** Resolves with the payload of the next `event` the client emits. */
export function nextEvent<K extends keyof RTMClientEvents>(client: RTMClient, event: K, timeoutMs = 3000): Promise<RTMClientEvents[K]> {
  return withTimeout(
    new Promise<RTMClientEvents[K]>((resolve) => client.once(event, resolve)),
    timeoutMs,
    `waiting for event '${String(event)}'`,
  );
}

export const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));
