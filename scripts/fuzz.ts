#!/usr/bin/env node
/**
 * Black-box fuzzer for a LIVE FPNN/RTM server on loopback.
 *
 *   node --conditions=rtm-source --import tsx scripts/fuzz.ts --host 127.0.0.1 --port 13325 --count 100000
 *     [--ws-port N] [--no-ws] [--no-tcp] [--concurrency 32] [--seed 1] [--time-limit 300] [--json]
 *
 * Opens many short connections (TCP, and WebSocket at ws://host:port/service/websocket) and sends
 * random and mutated FPNN input: valid frames with random payloads, golden frames from
 * spec/vectors/frames.json (as is and mutated), garbage, oversize headers, truncated frames, bad
 * `*key` quests. After each input it watches how the server reacts (answers, close, silence), and
 * regularly checks the server still serves with a `*ping` quest (answer `{ts}`) on a fresh
 * connection. Bounded by `count` and a time limit; refuses any host that is not loopback.
 */
import net from 'node:net';
import { existsSync, readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import WebSocket from 'ws';
import {
  decodePayload,
  encodeAnswer,
  encodePayload,
  encodeQuest,
  Flag,
  FrameDecoder,
  type Frame,
  type Payload,
  type PayloadFlag,
} from '@rtm/fpnn';

export type InputKind = 'valid' | 'golden' | 'goldenMutated' | 'garbage' | 'oversize' | 'truncated' | 'badPayload' | 'badHeader' | 'badKey';

export const INPUT_KINDS: readonly InputKind[] = [
  'valid',
  'golden',
  'goldenMutated',
  'garbage',
  'oversize',
  'truncated',
  'badPayload',
  'badHeader',
  'badKey',
];

/** Kinds that are whole, well-framed frames (the payload may still be bad). */
const CLEAN_KINDS: readonly InputKind[] = ['valid', 'golden', 'badPayload'];

export interface FuzzOptions {
  /** Target host; must be loopback (127.0.0.0/8, ::1, localhost). */
  host: string;
  /** FPNN TCP port (and WebSocket port unless `wsPort`). */
  port: number;
  /** Number of fuzz inputs to send in total. */
  count: number;
  /** WebSocket port. @default port */
  wsPort?: number;
  /** WebSocket path. @default '/service/websocket' */
  wsPath?: string;
  /** Transports to fuzz. @default ['tcp', 'ws'] */
  transports?: Array<'tcp' | 'ws'>;
  /** Connections in flight. @default 32 */
  concurrency?: number;
  /** Inputs sent on one connection at most (until the server closes it). @default 4 */
  inputsPerConnection?: number;
  /** Quiet time after an input before the next one, ms (a server close or an answer ends it early). @default 30 */
  reactionMs?: number;
  /** Run a `*ping` health check every this many inputs. @default 500 */
  healthEvery?: number;
  /** Hard stop, ms. @default 300000 */
  timeLimitMs?: number;
  /** PRNG seed, for reproducible runs. @default Date.now() */
  seed?: number;
  /** frames.json with golden frames. @default fixtures/spec-vectors/frames.json of the repository */
  vectorsPath?: string;
  /** Progress lines. @default none */
  log?: (line: string) => void;
}

export interface FuzzReport {
  seed: number;
  sent: number;
  byKind: Record<InputKind, number>;
  byTransport: { tcp: number; ws: number };
  connections: number;
  connectFailures: number;
  /** What the server did after each input. */
  reactions: { answered: number; closed: number; silent: number };
  answers: { ok: number; error: number; byCode: Record<string, number>; pushes: number };
  /** Server output that was not valid FPNN (a server bug). */
  badServerFrames: number;
  /** How the server closed connections, per input kind (closes / inputs of that kind). */
  closesByKind: Record<InputKind, number>;
  health: { ok: number; failed: number; lastError?: string };
  /** The server answered `*ping` on TCP (and WS) after the run. */
  healthyAtEnd: boolean;
  stoppedByTimeLimit: boolean;
  durationMs: number;
}

// ------------------------------------------------------------------------------------------------
// Random input

/** mulberry32: small, seedable. */
function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const METHODS = [
  '*ping',
  '*key',
  '*status',
  '*infos',
  '*tune',
  'auth',
  'bye',
  'gettoken',
  'sendmsg',
  'sendmsgs',
  'sendgroupmsg',
  'sendroommsg',
  'getp2pmsg',
  'getgroupmsg',
  'getroommsg',
  'getmsg',
  'delmsg',
  'getunread',
  'getp2punread',
  'cleanunread',
  'enterroom',
  'leaveroom',
  'addgroupmembers',
  'setlisten',
  'getonlineusers',
  'ping',
  'kickout',
];
const KEYS = [
  'pid',
  'uid',
  'from',
  'to',
  'gid',
  'rid',
  'mid',
  'mtype',
  'msg',
  'attrs',
  'token',
  'sign',
  'salt',
  'ts',
  'uids',
  'tos',
  'num',
  'desc',
  'begin',
  'end',
  'lastid',
  'xid',
  'type',
  'clear',
  'version',
];

class Gen {
  constructor(readonly rand: () => number) {}
  int(n: number): number {
    return Math.floor(this.rand() * n);
  }
  pick<T>(items: readonly T[]): T {
    return items[this.int(items.length)]!;
  }
  chance(p: number): boolean {
    return this.rand() < p;
  }
  bytes(n: number): Uint8Array {
    const out = new Uint8Array(n);
    for (let i = 0; i < n; i++) out[i] = this.int(256);
    return out;
  }
  string(max: number): string {
    let s = '';
    const n = this.int(max + 1);
    for (let i = 0; i < n; i++)
      s += this.chance(0.9) ? String.fromCharCode(32 + this.int(95)) : String.fromCodePoint(this.int(0x10ffff) & 0xd7ff);
    return s;
  }
  value(depth = 0, json = false): unknown {
    const r = this.int(depth > 2 ? 8 : 10);
    switch (r) {
      case 0:
        return this.int(1 << 30) - (1 << 29);
      case 1: {
        const big = (BigInt(this.int(2 ** 31)) << 32n) | BigInt(this.int(2 ** 32));
        return this.chance(0.3) ? -big : big;
      }
      case 2:
        return this.rand() * 1e15;
      case 3:
        return this.string(40);
      case 4:
        return json ? this.string(8) : this.bytes(this.int(40));
      case 5:
        return this.chance(0.5);
      case 6:
        return null;
      case 7:
        return this.pick([0, 1, -1, 2 ** 31, 2 ** 53, 2n ** 63n - 1n, -(2n ** 63n), 2n ** 64n - 1n, '', 'x'.repeat(300)]);
      case 8:
        return Array.from({ length: this.int(6) }, () => this.value(depth + 1, json));
      default:
        return this.map(depth + 1, json);
    }
  }
  map(depth = 0, json = false): Payload {
    const out: Payload = {};
    const n = this.int(8);
    for (let i = 0; i < n; i++) out[this.chance(0.7) ? this.pick(KEYS) : this.string(10)] = this.value(depth, json);
    return out;
  }
  method(): string {
    if (this.chance(0.8)) return this.pick(METHODS);
    const m = this.string(30);
    return m.length === 0 || Buffer.byteLength(m) > 255 ? 'x' : m;
  }
  validFrame(): Uint8Array {
    const json = this.chance(0.2);
    const flag: PayloadFlag = json ? Flag.JSON : Flag.MSGPACK;
    let payload: Uint8Array;
    try {
      payload = encodePayload(flag, this.map(0, json));
    } catch {
      payload = encodePayload(flag, {});
    }
    if (this.chance(0.05)) return encodeAnswer(1 + this.int(1000), payload, flag, this.chance(0.5));
    return encodeQuest(this.method(), payload, flag, this.chance(0.1), 1 + this.int(0xfffffffe));
  }
  mutate(frame: Uint8Array): Uint8Array {
    const bytes = [...frame];
    const n = 1 + this.int(4);
    for (let i = 0; i < n; i++) {
      const op = this.int(6);
      const at = this.int(bytes.length + 1);
      if (op === 0 && at < bytes.length) bytes[at] = this.int(256);
      else if (op === 1) bytes.splice(at, 0, ...this.bytes(1 + this.int(8)));
      else if (op === 2) bytes.splice(at, 1 + this.int(8));
      else if (op === 3 && bytes.length > 12)
        bytes[4 + this.int(8)] = this.int(256); // a header field
      else if (op === 4 && at < bytes.length) bytes[at]! ^= 1 << this.int(8);
      else if (op === 5) bytes.length = Math.min(bytes.length, at);
    }
    return Uint8Array.from(bytes);
  }
  header(fields: { version?: number; flag?: number; mtype?: number; ss?: number; psize?: number }): Uint8Array {
    const h = new Uint8Array(12);
    h.set([0x46, 0x50, 0x4e, 0x4e, fields.version ?? 1, fields.flag ?? 0x80, fields.mtype ?? 1, fields.ss ?? 5]);
    new DataView(h.buffer).setUint32(8, fields.psize ?? 1, true);
    return h;
  }
}

function loadGolden(path: string | undefined): Uint8Array[] {
  const file = path ?? fileURLToPath(new URL('../fixtures/spec-vectors/frames.json', import.meta.url));
  if (!existsSync(file)) return [];
  const entries = JSON.parse(readFileSync(file, 'utf8')) as Array<{ hex: string }>;
  return entries.map((e) => new Uint8Array(Buffer.from(e.hex, 'hex')));
}

/** One fuzz input: the byte chunks to write (each chunk = one write / one WebSocket message). */
function makeInput(g: Gen, kind: InputKind, golden: Uint8Array[], transport: 'tcp' | 'ws'): Uint8Array[] {
  let bytes: Uint8Array;
  switch (kind) {
    case 'valid':
      bytes = g.validFrame();
      break;
    case 'golden':
      bytes = golden.length ? g.pick(golden) : g.validFrame();
      break;
    case 'goldenMutated':
      bytes = g.mutate(golden.length ? g.pick(golden) : g.validFrame());
      break;
    case 'garbage': {
      const prefixes = ['', '', 'FPNN', 'GET ', 'POST', 'HTTP', '\u0016\u0003\u0001'];
      bytes = new Uint8Array(Buffer.concat([Buffer.from(g.pick(prefixes), 'latin1'), g.bytes(g.int(300))]));
      break;
    }
    case 'oversize': {
      const psize = g.pick([0xffffffff, 0x7fffffff, 8 * 1024 * 1024, 8 * 1024 * 1024 + 1, 64 * 1024 * 1024, 1 + g.int(0xffffffff)]);
      bytes = new Uint8Array(Buffer.concat([g.header({ mtype: g.int(3), ss: 1 + g.int(255), psize }), g.bytes(g.int(64))]));
      break;
    }
    case 'truncated': {
      const full = g.chance(0.5) && golden.length ? g.pick(golden) : g.validFrame();
      bytes = full.subarray(0, g.int(full.length));
      break;
    }
    case 'badPayload': {
      const body = g.chance(0.5)
        ? g.bytes(g.int(100))
        : Uint8Array.from(g.pick([[0x91, 0x01], [0xc1], [0xc0], [0xdd, 0xff, 0xff, 0xff, 0xff], [0x81, 0xa1]]));
      const flag = g.pick([Flag.MSGPACK, Flag.JSON] as PayloadFlag[]);
      bytes = encodeQuest(g.method(), body, flag, g.chance(0.1), 1 + g.int(1000));
      break;
    }
    case 'badHeader':
      bytes = new Uint8Array(
        Buffer.concat([
          g.header({ version: g.int(256), flag: g.int(256), mtype: g.int(256), ss: g.int(256), psize: g.int(64) }),
          g.bytes(g.int(300)),
        ]),
      );
      break;
    case 'badKey': {
      const payload: Payload = {
        publicKey: g.pick([g.bytes(64), g.bytes(g.int(100)), new Uint8Array(64), g.string(64), 5]),
        bits: g.pick([128, 256, 0, 64, 512, '128', -1]),
        streamMode: g.pick([true, false, 'yes', 2]),
      };
      bytes = encodeQuest('*key', encodePayload(Flag.MSGPACK, payload), Flag.MSGPACK, false, 1);
      if (transport === 'tcp' && g.chance(0.5)) bytes = new Uint8Array(Buffer.concat([bytes, g.bytes(g.int(100))])); // "ciphertext" after it
      break;
    }
  }
  // Split into writes / messages, or coalesce with a trailing valid frame.
  if (bytes.length > 1 && g.chance(0.3)) {
    const cut = 1 + g.int(bytes.length - 1);
    return [bytes.subarray(0, cut), bytes.subarray(cut)];
  }
  if (g.chance(0.1)) return [new Uint8Array(Buffer.concat([bytes, g.validFrame()]))];
  return [bytes];
}

// ------------------------------------------------------------------------------------------------
// Connections

interface Conn {
  write(chunk: Uint8Array): void;
  close(): void;
  /** Resolves when the server closed (or the socket failed). */
  readonly closed: Promise<void>;
  isClosed(): boolean;
  /** Frames the server sent since the last call. */
  takeFrames(): Frame[];
  /** Frames received and not taken yet. */
  readonly pendingFrames: number;
  onActivity(fn: () => void): void;
  badOutput: boolean;
}

function isLoopback(host: string): boolean {
  if (host === 'localhost') return true;
  if (net.isIPv4(host)) return host.startsWith('127.');
  if (net.isIPv6(host)) return host === '::1' || host === '0:0:0:0:0:0:0:1' || /^::ffff:127\./i.test(host);
  return false;
}

function wireConn(send: (chunk: Uint8Array) => void, end: () => void): { conn: Conn; onData(chunk: Uint8Array): void; onClose(): void } {
  const decoder = new FrameDecoder();
  let frames: Frame[] = [];
  let closed = false;
  let activity: (() => void) | undefined;
  let resolveClosed!: () => void;
  const closedPromise = new Promise<void>((r) => (resolveClosed = r));
  const conn: Conn = {
    write: (chunk) => {
      if (!closed) send(chunk);
    },
    close: end,
    closed: closedPromise,
    isClosed: () => closed,
    takeFrames: () => {
      const out = frames;
      frames = [];
      return out;
    },
    onActivity: (fn) => (activity = fn),
    badOutput: false,
    get pendingFrames() {
      return frames.length;
    },
  };
  return {
    conn,
    onData(chunk) {
      if (conn.badOutput) return;
      try {
        frames.push(...decoder.push(chunk));
      } catch {
        conn.badOutput = true;
      }
      activity?.();
    },
    onClose() {
      if (closed) return;
      closed = true;
      resolveClosed();
      activity?.();
    },
  };
}

function connectTcp(host: string, port: number, timeoutMs: number): Promise<Conn> {
  return new Promise((resolve, reject) => {
    const socket = net.connect({ host, port });
    socket.setNoDelay(true);
    const w = wireConn(
      (c) => socket.write(c),
      () => socket.destroy(),
    );
    const timer = setTimeout(() => {
      socket.destroy();
      reject(new Error('connect timeout'));
    }, timeoutMs);
    socket.once('connect', () => {
      clearTimeout(timer);
      resolve(w.conn);
    });
    socket.on('data', (d) => w.onData(d));
    socket.on('error', (err) => {
      clearTimeout(timer);
      w.onClose();
      reject(err);
    });
    socket.on('end', () => w.onClose()); // the server closed its side
    socket.on('close', () => w.onClose());
  });
}

function connectWs(url: string, timeoutMs: number): Promise<Conn> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url, { handshakeTimeout: timeoutMs, maxPayload: 16 * 1024 * 1024 });
    ws.binaryType = 'nodebuffer';
    const w = wireConn(
      (c) => ws.send(c, { binary: true }),
      () => ws.terminate(),
    );
    ws.once('open', () => resolve(w.conn));
    ws.on('message', (data) => w.onData(Array.isArray(data) ? Buffer.concat(data) : Buffer.from(data as Buffer)));
    ws.on('error', (err) => {
      w.onClose();
      reject(err);
    });
    ws.on('close', () => w.onClose());
  });
}

/** Waits until the connection is quiet for `quietMs`, closes, or `maxMs` passes. */
function settle(conn: Conn, quietMs: number, maxMs: number): Promise<void> {
  return new Promise((resolve) => {
    let quiet: ReturnType<typeof setTimeout>;
    const done = (): void => {
      clearTimeout(quiet);
      clearTimeout(hard);
      conn.onActivity(() => {});
      resolve();
    };
    const hard = setTimeout(done, maxMs);
    const arm = (): void => {
      clearTimeout(quiet);
      if (conn.isClosed()) return done();
      // Once the server answered, only wait briefly for more (a close after an error answer).
      quiet = setTimeout(done, conn.pendingFrames > 0 ? Math.min(quietMs, 5) : quietMs);
    };
    conn.onActivity(arm);
    arm();
  });
}

/** `*ping` on a fresh connection: true when answered `{ts}` in time. */
async function ping(connect: () => Promise<Conn>, timeoutMs: number): Promise<string | undefined> {
  let conn: Conn;
  try {
    conn = await connect();
  } catch (err) {
    return `connect: ${(err as Error).message}`;
  }
  try {
    const seq = 1;
    conn.write(encodeQuest('*ping', encodePayload(Flag.MSGPACK, {}), Flag.MSGPACK, false, seq));
    const deadline = Date.now() + timeoutMs;
    while (Date.now() < deadline) {
      for (const f of conn.takeFrames()) {
        if (f.kind !== 'answer' || f.seq !== seq) continue;
        if (!f.ok) return `*ping answered with an error: ${JSON.stringify(String(decodePayload(f.flag, f.payload).ex))}`;
        const ts = decodePayload(f.flag, f.payload).ts;
        return typeof ts === 'number' || typeof ts === 'bigint' ? undefined : '*ping answer has no ts';
      }
      if (conn.isClosed()) return 'connection closed before the *ping answer';
      await settle(conn, 50, Math.max(1, deadline - Date.now()));
    }
    return `no *ping answer within ${timeoutMs} ms`;
  } finally {
    conn.close();
  }
}

// ------------------------------------------------------------------------------------------------

export async function runFuzz(options: FuzzOptions): Promise<FuzzReport> {
  const { host, port, count } = options;
  if (!isLoopback(host)) throw new Error(`refusing to fuzz '${host}': only loopback hosts (127.0.0.0/8, ::1, localhost) are allowed`);
  if (!Number.isInteger(port) || port <= 0 || port > 65535) throw new Error(`bad port ${port}`);
  if (!Number.isInteger(count) || count < 0) throw new Error(`bad count ${count}`);
  const wsPort = options.wsPort ?? port;
  const wsUrl = `ws://${host.includes(':') ? `[${host}]` : host}:${wsPort}${options.wsPath ?? '/service/websocket'}`;
  const transports = options.transports ?? ['tcp', 'ws'];
  if (transports.length === 0) throw new Error('no transport selected');
  const concurrency = Math.max(1, options.concurrency ?? 32);
  const perConnection = Math.max(1, options.inputsPerConnection ?? 4);
  const reactionMs = options.reactionMs ?? 30;
  const healthEvery = Math.max(1, options.healthEvery ?? 500);
  const timeLimitMs = options.timeLimitMs ?? 300_000;
  const seed = options.seed ?? Date.now() >>> 0;
  const log = options.log ?? (() => {});
  const g = new Gen(prng(seed));
  const golden = loadGolden(options.vectorsPath);
  const started = Date.now();
  const deadline = started + timeLimitMs;

  const zero = (): Record<InputKind, number> => Object.fromEntries(INPUT_KINDS.map((k) => [k, 0])) as Record<InputKind, number>;
  const report: FuzzReport = {
    seed,
    sent: 0,
    byKind: zero(),
    byTransport: { tcp: 0, ws: 0 },
    connections: 0,
    connectFailures: 0,
    reactions: { answered: 0, closed: 0, silent: 0 },
    answers: { ok: 0, error: 0, byCode: {}, pushes: 0 },
    badServerFrames: 0,
    closesByKind: zero(),
    health: { ok: 0, failed: 0 },
    healthyAtEnd: false,
    stoppedByTimeLimit: false,
    durationMs: 0,
  };
  const connect = (t: 'tcp' | 'ws'): Promise<Conn> => (t === 'tcp' ? connectTcp(host, port, 3000) : connectWs(wsUrl, 3000));

  let claimed = 0;
  let nextHealth = healthEvery;
  let healthRunning: Promise<void> | undefined;
  const checkHealth = async (): Promise<void> => {
    for (const t of transports) {
      const err = await ping(() => connect(t), 3000);
      if (err) {
        report.health.failed++;
        report.health.lastError = `${t}: ${err}`;
        log(`health check failed (${t}) after ${report.sent} inputs: ${err}`);
      } else report.health.ok++;
    }
  };

  const account = (conn: Conn, kind: InputKind): 'answered' | 'closed' | 'silent' => {
    const frames = conn.takeFrames();
    for (const f of frames) {
      if (f.kind === 'quest') {
        report.answers.pushes++;
        continue;
      }
      if (f.ok) report.answers.ok++;
      else {
        report.answers.error++;
        let code = 'undecodable';
        try {
          code = String(decodePayload(f.flag, f.payload).code);
        } catch {
          /* counted as undecodable */
        }
        report.answers.byCode[code] = (report.answers.byCode[code] ?? 0) + 1;
      }
    }
    if (conn.isClosed()) {
      report.reactions.closed++;
      report.closesByKind[kind]++;
      return 'closed';
    }
    if (frames.length > 0) {
      report.reactions.answered++;
      return 'answered';
    }
    report.reactions.silent++;
    return 'silent';
  };

  const worker = async (): Promise<void> => {
    while (claimed < count && Date.now() < deadline) {
      const transport = g.pick(transports);
      // Input that leaves the server's framing state unknown (garbage, partial or oversize frames)
      // goes alone on a fresh connection, so what the server does is attributable to it; clean
      // frames share a connection, several in a row.
      const firstKind = g.pick(INPUT_KINDS);
      const inputs = CLEAN_KINDS.includes(firstKind) ? perConnection : 1;
      let conn: Conn;
      try {
        conn = await connect(transport);
      } catch {
        report.connectFailures++;
        if (report.connectFailures > 50 && report.connections === 0) throw new Error(`cannot connect to ${host}:${port}`);
        await new Promise((r) => setTimeout(r, 20));
        continue;
      }
      report.connections++;
      try {
        for (let i = 0; i < inputs && claimed < count && !conn.isClosed() && Date.now() < deadline; i++) {
          claimed++;
          const kind = i === 0 ? firstKind : g.pick(CLEAN_KINDS);
          for (const chunk of makeInput(g, kind, golden, transport)) conn.write(chunk);
          report.sent++;
          report.byKind[kind]++;
          report.byTransport[transport]++;
          await settle(conn, reactionMs, 2000);
          const reaction = account(conn, kind);
          if (conn.badOutput) report.badServerFrames++;
          if (report.sent >= nextHealth && !healthRunning) {
            nextHealth += healthEvery;
            healthRunning = checkHealth().finally(() => (healthRunning = undefined));
          }
          // Silence may also mean a frame the server is still waiting for: start afresh.
          if (reaction === 'silent') break;
          if (report.sent % 10_000 === 0)
            log(`${report.sent} inputs, ${report.connections} connections, health ${report.health.ok} ok / ${report.health.failed} failed`);
        }
      } finally {
        conn.close();
      }
    }
  };

  await Promise.all(Array.from({ length: concurrency }, worker));
  await healthRunning;
  report.stoppedByTimeLimit = claimed < count;
  // Final check: the server must still serve on every transport.
  const before = report.health.failed;
  await checkHealth();
  report.healthyAtEnd = report.health.failed === before;
  report.durationMs = Date.now() - started;
  return report;
}

// ------------------------------------------------------------------------------------------------
// CLI

function parseArgs(argv: string[]): FuzzOptions & { json: boolean } {
  const opts: Record<string, string | boolean> = {};
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    if (!a.startsWith('--')) throw new Error(`unexpected argument '${a}'`);
    const name = a.slice(2);
    if (['no-ws', 'no-tcp', 'json'].includes(name)) opts[name] = true;
    else {
      const v = argv[++i];
      if (v === undefined) throw new Error(`--${name} needs a value`);
      opts[name] = v;
    }
  }
  const num = (name: string): number | undefined => {
    if (opts[name] === undefined) return undefined;
    const n = Number(opts[name]);
    if (!Number.isFinite(n)) throw new Error(`--${name} must be a number`);
    return n;
  };
  const transports: Array<'tcp' | 'ws'> = [];
  if (!opts['no-tcp']) transports.push('tcp');
  if (!opts['no-ws']) transports.push('ws');
  const result: FuzzOptions & { json: boolean } = {
    host: typeof opts.host === 'string' ? opts.host : '127.0.0.1',
    port: num('port') ?? NaN,
    count: num('count') ?? 10_000,
    transports,
    json: opts.json === true,
    log: (line) => console.error(line),
  };
  const optional: Array<[keyof FuzzOptions, string, number]> = [
    ['wsPort', 'ws-port', 1],
    ['concurrency', 'concurrency', 1],
    ['seed', 'seed', 1],
    ['timeLimitMs', 'time-limit', 1000],
    ['reactionMs', 'reaction-ms', 1],
    ['healthEvery', 'health-every', 1],
    ['inputsPerConnection', 'per-connection', 1],
  ];
  for (const [key, flag, scale] of optional) {
    const v = num(flag);
    if (v !== undefined) (result as unknown as Record<string, number>)[key] = v * scale;
  }
  if (typeof opts['ws-path'] === 'string') result.wsPath = opts['ws-path'];
  if (typeof opts.vectors === 'string') result.vectorsPath = opts.vectors;
  return result;
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  const args = parseArgs(process.argv.slice(2));
  runFuzz(args).then(
    (report) => {
      if (args.json) console.log(JSON.stringify(report, null, 2));
      else {
        console.log(`seed ${report.seed}: ${report.sent} inputs over ${report.connections} connections in ${report.durationMs} ms`);
        console.log(`  by kind: ${JSON.stringify(report.byKind)}`);
        console.log(`  by transport: ${JSON.stringify(report.byTransport)}; connect failures ${report.connectFailures}`);
        console.log(`  server reaction: ${JSON.stringify(report.reactions)}; closes by kind ${JSON.stringify(report.closesByKind)}`);
        console.log(
          `  answers: ${report.answers.ok} ok, ${report.answers.error} errors ${JSON.stringify(report.answers.byCode)}, ${report.answers.pushes} server quests`,
        );
        console.log(`  invalid server output: ${report.badServerFrames}`);
        console.log(
          `  health: ${report.health.ok} ok, ${report.health.failed} failed${report.health.lastError ? ` (last: ${report.health.lastError})` : ''}`,
        );
        console.log(
          `  ${report.healthyAtEnd ? 'server still serving *ping at the end' : 'SERVER NOT SERVING *ping AT THE END'}${report.stoppedByTimeLimit ? ' (stopped by the time limit)' : ''}`,
        );
      }
      process.exitCode = report.healthyAtEnd && report.health.failed === 0 && report.badServerFrames === 0 ? 0 : 1;
    },
    (err: unknown) => {
      console.error(`fuzz: ${(err as Error).message}`);
      process.exitCode = 2;
    },
  );
}
