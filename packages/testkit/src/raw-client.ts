import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { connect, type Socket } from 'node:net';
import { connect as connectTls, type TLSSocket } from 'node:tls';
import { Flag, FpnnPeer, FrameDecoder, type Payload, type PayloadFlag } from '@rtm/fpnn';
import WebSocket from 'ws';
import { TEST_PID, TEST_SECRET } from './harness.js';

/**
 * A bare FPNN client for tests that must control the wire exactly (bad input, raw frames).
 * Normal tests use our SDKs.
 */
export class RawClient {
  readonly pushes: { method: string; payload: Payload; oneway: boolean }[] = [];
  /** Set it to an array to record every frame received from then on, in wire order: `answer <seq>`, or `quest <method> [<mid>]` (a push). */
  arrivals: string[] | undefined;
  private pushWaiters: (() => void)[] = [];
  private closedResolve!: () => void;
  readonly closed = new Promise<void>((r) => (this.closedResolve = r));
  isClosed = false;
  peer: FpnnPeer;
  private decoder = new FrameDecoder();

  private constructor(
    private readonly writeBytes: (b: Uint8Array) => void,
    private readonly end: () => void,
  ) {
    this.peer = new FpnnPeer({
      write: (b) => this.writeBytes(b),
      questTimeoutMs: 5000,
      onQuest: (q) => {
        this.arrivals?.push(q.payload['mid'] === undefined ? `quest ${q.method}` : `quest ${q.method} ${q.payload['mid']}`);
        this.pushes.push({ method: q.method, payload: q.payload, oneway: q.oneway });
        for (const w of this.pushWaiters.splice(0)) w();
        return {};
      },
    });
  }

  static tcp(endpoint: string): Promise<RawClient & { socket: Socket }> {
    const { host, port } = splitEndpoint(endpoint);
    return RawClient.overSocket((ready) => connect(port, host, ready));
  }

  /** FPNN over TLS (the client gate's TLS port), trusting `ca`. */
  static tls(endpoint: string, ca: Buffer): Promise<RawClient & { socket: TLSSocket }> {
    const { host, port } = splitEndpoint(endpoint);
    return RawClient.overSocket((ready) => connectTls({ host, port, ca, servername: 'localhost' }, ready));
  }

  /** FPNN over a socket `open` makes (calling `ready` once connected): e.g. one that sends a PROXY header first. */
  static overSocket<S extends Socket>(open: (ready: () => void) => S): Promise<RawClient & { socket: S }> {
    return new Promise((resolve, reject) => {
      const socket = open(() => resolve(client));
      const client = Object.assign(
        new RawClient(
          (b) => socket.write(b),
          () => socket.destroy(),
        ),
        { socket },
      );
      socket.on('data', (chunk) => client.onBytes(chunk));
      socket.on('error', () => undefined);
      socket.on('close', () => client.onClose());
      socket.once('error', reject);
    });
  }

  /** `options`: ws's, e.g. `createConnection` for a socket that sends a PROXY header first. */
  static websocket(
    endpoint: string,
    path = '/service/websocket',
    options?: WebSocket.ClientOptions,
  ): Promise<RawClient & { ws: WebSocket }> {
    return new Promise((resolve, reject) => {
      const ws = new WebSocket(`ws://${endpoint}${path}`, options);
      ws.binaryType = 'nodebuffer';
      const client = Object.assign(
        new RawClient(
          (b) => ws.send(b),
          () => ws.terminate(),
        ),
        { ws },
      );
      ws.on('open', () => resolve(client));
      ws.on('message', (data: Buffer) => client.onBytes(data));
      ws.on('close', () => client.onClose());
      ws.on('error', reject);
    });
  }

  /**
   * A client-gate connection (WebSocket) logged in as `uid` of the test project, with the token
   * `backend` (a server-gate connection) gets for it; rejects, closed, unless `auth` answers
   * `{ok: true}`.
   */
  static async loggedIn(clientEndpoint: string, backend: RawClient, uid: bigint): Promise<RawClient & { ws: WebSocket }> {
    const { token } = await backend.signed('gettoken', { uid }, TEST_PID, TEST_SECRET);
    const client = await RawClient.websocket(clientEndpoint);
    try {
      assert.deepEqual(await client.quest('auth', { pid: TEST_PID, uid, token }), { ok: true });
    } catch (err) {
      client.close();
      throw err;
    }
    return client;
  }

  private onBytes(chunk: Uint8Array): void {
    try {
      for (const frame of this.decoder.push(chunk)) {
        if (frame.kind === 'answer') this.arrivals?.push(`answer ${frame.seq}`);
        this.peer.receive(frame);
      }
    } catch {
      this.end();
    }
  }

  private onClose(): void {
    this.isClosed = true;
    this.peer.close();
    this.closedResolve();
    for (const w of this.pushWaiters.splice(0)) w();
  }

  write(bytes: Uint8Array): void {
    this.writeBytes(bytes);
  }

  quest(method: string, payload: Payload = {}, flag: PayloadFlag = Flag.MSGPACK): Promise<Payload> {
    return this.peer.quest(method, payload, { flag });
  }

  /** A server-gate quest signed for (pid, secret). */
  signed(method: string, payload: Payload, pid: number, secret: string, salt = uniqueSalt()): Promise<Payload> {
    return this.quest(method, { ...signFields(method, pid, secret, salt), ...payload });
  }

  /** Resolves when `count` pushes of `method` have arrived (or rejects after `timeoutMs`). */
  async waitForPushes(method: string, count = 1, timeoutMs = 3000): Promise<Payload[]> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const got = this.pushes.filter((p) => p.method === method);
      if (got.length >= count) return got.map((p) => p.payload);
      if (Date.now() > deadline || this.isClosed) throw new Error(`expected ${count} '${method}' pushes, got ${got.length}`);
      await new Promise<void>((r) => {
        this.pushWaiters.push(r);
        setTimeout(r, 50);
      });
    }
  }

  close(): void {
    this.end();
  }

  /** A network drop of a logged-in client: the socket dies without `bye`; resolves once it is closed. */
  async drop(): Promise<void> {
    this.close();
    await this.closed;
  }

  /** An explicit logout: `bye` (answered `{}`, else this rejects), then the socket closes. */
  async bye(): Promise<void> {
    const answer = await this.quest('bye');
    if (Object.keys(answer).length !== 0) throw new Error(`bye answered ${JSON.stringify(answer)}, not {}`);
    await this.drop();
  }
}

let saltCounter = 0;

/** A salt unique within this process: (ms << 20) + a counter, like the SDKs' mid generators. */
export function uniqueSalt(): bigint {
  saltCounter = (saltCounter + 1) & 0xfffff;
  return (BigInt(Date.now()) << 20n) + BigInt(saltCounter);
}

export function signFields(method: string, pid: number, secret: string, salt: bigint, ts = Math.floor(Date.now() / 1000)): Payload {
  const sign = createHash('md5').update(`${pid}:${secret}:${salt}:${method}:${ts}`).digest('hex').toUpperCase();
  return { pid, salt, ts, sign };
}

function splitEndpoint(endpoint: string): { host: string; port: number } {
  const at = endpoint.lastIndexOf(':');
  return { host: endpoint.slice(0, at).replace(/^\[(.*)\]$/, '$1'), port: Number(endpoint.slice(at + 1)) };
}
