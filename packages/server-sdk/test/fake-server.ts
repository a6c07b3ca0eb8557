/**
 * A small fake RTM server gate for the SDK tests: node:net + FrameDecoder + FpnnPeer on
 * 127.0.0.1 (ephemeral port). It verifies the signature of every quest (answering 200002 when it is
 * wrong, like the real gate), records the quests, answers canned replies per method, and can push
 * quests, write raw bytes, drop connections and stop / resume listening.
 */
import { createServer, type Server, type Socket } from 'node:net';
import { once } from 'node:events';
import { FpnnPeer, FrameDecoder, RtmError, RtmErrorCode, type IncomingQuest, type Payload } from '@rtm/fpnn';
import { signQuest } from '../src/index.js';

export interface RecordedQuest {
  method: string;
  payload: Payload;
  /** The sign matched pid/secret/salt/method/ts. */
  signOk: boolean;
  connection: number;
}

/** Returns the answer payload; throw an RtmError for an error answer; return a never-settling promise to stay silent. */
export type Handler = (payload: Payload, quest: IncomingQuest) => Payload | Promise<Payload>;

interface FakeConnection {
  id: number;
  socket: Socket;
  peer: FpnnPeer;
}

export class FakeRtmServer {
  readonly quests: RecordedQuest[] = [];
  readonly handlers = new Map<string, Handler>();
  private readonly connections = new Set<FakeConnection>();
  private readonly sockets = new Set<Socket>();
  private connectionCount = 0;
  private questListeners: Array<() => void> = [];
  port = 0;
  private stopped: Promise<void> = Promise.resolve();

  private constructor(
    readonly pid: number,
    readonly secret: string,
    private readonly server: Server,
  ) {}

  static async start(pid = 11000001, secret = 'golden-secret'): Promise<FakeRtmServer> {
    const server = createServer();
    const fake = new FakeRtmServer(pid, secret, server);
    server.on('connection', (socket) => fake.accept(socket));
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
    fake.port = (server.address() as { port: number }).port;
    return fake;
  }

  get endpoint(): string {
    return `127.0.0.1:${this.port}`;
  }

  /** Connections accepted so far. */
  get accepted(): number {
    return this.connectionCount;
  }

  get openConnections(): number {
    return this.connections.size;
  }

  on(method: string, handler: Handler): this {
    this.handlers.set(method, handler);
    return this;
  }

  questsOf(method: string): RecordedQuest[] {
    return this.quests.filter((q) => q.method === method);
  }

  /** Resolves once `count` quests of `method` were received. */
  async waitForQuests(method: string, count = 1, timeoutMs = 3000): Promise<RecordedQuest[]> {
    const deadline = Date.now() + timeoutMs;
    while (this.questsOf(method).length < count) {
      if (Date.now() > deadline) throw new Error(`fake server: waited ${timeoutMs} ms for ${count} '${method}' quest(s)`);
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, 20);
        this.questListeners.push(() => {
          clearTimeout(t);
          resolve();
        });
      });
    }
    return this.questsOf(method);
  }

  /** Sends a twoway quest to the newest connection and resolves with the client's answer. */
  push(method: string, payload: Payload): Promise<Payload> {
    return this.newest().peer.quest(method, payload, { timeoutMs: 2000 });
  }

  /** Writes raw bytes to the newest connection. */
  writeRaw(bytes: Uint8Array): void {
    this.newest().socket.write(bytes);
  }

  /** Destroys every client connection (the client sees the server hang up). */
  dropConnections(): void {
    for (const c of this.connections) c.socket.destroy();
  }

  /** Stops accepting connections at once (existing ones stay; net.Server emits 'close' when they are gone). */
  stopListening(): Promise<void> {
    if (!this.server.listening) return Promise.resolve();
    this.stopped = once(this.server, 'close').then(() => undefined);
    this.server.close();
    return Promise.resolve();
  }

  async resumeListening(): Promise<void> {
    this.dropConnections();
    await this.stopped;
    this.server.listen(this.port, '127.0.0.1');
    await once(this.server, 'listening');
  }

  async close(): Promise<void> {
    for (const s of this.sockets) s.destroy();
    await this.stopListening();
    await this.stopped;
  }

  private newest(): FakeConnection {
    const all = [...this.connections];
    const c = all[all.length - 1];
    if (!c) throw new Error('fake server: no client connection');
    return c;
  }

  private accept(socket: Socket): void {
    const id = ++this.connectionCount;
    const decoder = new FrameDecoder();
    const peer: FpnnPeer = new FpnnPeer({
      write: (frame) => {
        if (!socket.destroyed) socket.write(frame);
      },
      onQuest: (quest) => this.serve(quest, id),
      questTimeoutMs: 2000,
    });
    const connection: FakeConnection = { id, socket, peer };
    this.connections.add(connection);
    this.sockets.add(socket);
    socket.on('data', (chunk) => {
      try {
        for (const frame of decoder.push(chunk)) peer.receive(frame);
      } catch {
        socket.destroy();
      }
    });
    socket.on('error', () => {});
    socket.on('close', () => {
      peer.close();
      this.connections.delete(connection);
      this.sockets.delete(socket);
    });
  }

  private serve(quest: IncomingQuest, connection: number): Payload | Promise<Payload> {
    const p = quest.payload;
    const signOk =
      p.pid === this.pid &&
      typeof p.sign === 'string' &&
      p.sign === signQuest(this.pid, this.secret, p.salt as bigint, quest.method, p.ts as number);
    this.quests.push({ method: quest.method, payload: p, signOk, connection });
    const listeners = this.questListeners;
    this.questListeners = [];
    for (const l of listeners) l();
    if (!signOk) throw new RtmError(RtmErrorCode.INVALID_PROJECT_ID_OR_SIGN, 'invalid pid or sign');
    const handler = this.handlers.get(quest.method);
    return handler ? handler(p, quest) : {};
  }
}

/** The repository's copy of the spec vectors (fixtures/spec-vectors), resolved from this file. */
export function vectorsDir(): URL {
  return new URL('../../../fixtures/spec-vectors/', import.meta.url);
}

/**
 * A TCP server that accepts connections and never answers (an encrypted client's `*key` gets no
 * answer): its endpoint, and the sockets it accepted. Closed after the test.
 */
export async function silentServer(t: { after(fn: () => void): void }): Promise<{ endpoint: string; accepted: Socket[] }> {
  const accepted: Socket[] = [];
  const server = createServer((s) => accepted.push(s.resume()));
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  t.after(() => {
    for (const s of accepted) s.destroy();
    server.close();
  });
  return { endpoint: `127.0.0.1:${(server.address() as { port: number }).port}`, accepted };
}
