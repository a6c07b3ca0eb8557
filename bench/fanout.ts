/**
 * Room fan-out: one publisher, rooms of 1,000 and 5,000 logged-in WebSocket connections spread over
 * worker processes; pushes delivered per second (counted at the clients) and server CPU per
 * delivered push (utime + stime of the server process from /proc), for our server beside Socket.IO
 * and a bare `ws` broadcast server (the Node ceiling), same workload, same run.
 *
 * Our server: the publisher sends `sendroommsg` through the server gate (no client rate limit);
 * clients log in (`gettoken` + `auth`), `enterroom`, and answer every `pushroommsg` (as SDKs do);
 * the answers to pushes that arrive together leave in one write (`--answers batched`, the default)
 * or each in its own write, as the official SDKs do (`--answers each`).
 * Socket.IO: clients join the rooms on connect; the publisher emits `pub`, the server emits to the
 * room. Bare ws: each message is encoded once and queued on every member, one write per connection
 * per event-loop turn.
 *
 * Rate: closed loop with a bounded backlog: the publisher keeps at most `window` pushes not yet
 * received by every member of the room (≈ `windowPushes / roomSize` messages), so each server runs
 * at the rate it (and the clients) can sustain, with bounded buffers.
 *
 *   node --no-memory-reducer --conditions=rtm-source --import tsx bench/fanout.ts [--sizes 1000,5000] [--workers 3]
 *     [--seconds 5] [--warmup 1.5] [--servers rtm,socketio,ws[,rtm-tls]] [--window-pushes 50000] [--join client|server] [--answers batched|each]
 *     [--profile <dir>] [--profile-servers rtm,socketio,ws]   (CPU profiles of the servers, in <dir>/<kind>/;
 *     summarise with bench/workers/cpuprofile-top.ts)
 *
 * Load generators run without V8's memory reducer (see `LOAD_GENERATOR_V8_FLAGS`); started without
 * the flag, the bench starts itself again with it.
 */
import { availableParallelism } from 'node:os';
import { parseArgs } from 'node:util';
import { RawClient, TEST_PID, TEST_SECRET } from '@rtm/testkit';
import { io as ioClient, type Socket } from 'socket.io-client';
import WebSocket from 'ws';
import {
  cpuMicros,
  fmt,
  clientTarget,
  SERVER_LABEL,
  sleep,
  startServerUnderTest,
  relaunchWithLoadGeneratorFlags,
  startWorker,
  type ServerKind,
  type ServerUnderTest,
  type Worker,
} from './workers/lib.js';

export interface FanoutOptions {
  sizes?: number[];
  workers?: number;
  seconds?: number;
  warmupSeconds?: number;
  servers?: ServerKind[];
  /** Pushes in flight (published, not yet received by every member). */
  windowPushes?: number;
  /** Our server: how clients join the room. */
  join?: 'client' | 'server';
  /** Our server: clients answer the pushes of one turn in one write (`batched`) or each in its own. */
  answers?: 'batched' | 'each';
  /** Directory for CPU profiles (V8 .cpuprofile, in <dir>/<server kind>/) of the servers in `profileServers`. */
  profileDir?: string;
  /** @default ['rtm'] */
  profileServers?: ServerKind[];
  log?: (line: string) => void;
}

export interface FanoutResult {
  server: ServerKind;
  roomSize: number;
  messagesPerSecond: number;
  deliveredPerSecond: number;
  serverCpuMicrosPerPush: number;
  /** Server CPU time / wall time over the measured window (1 = one core busy). */
  serverCores: number;
  /** CPU of the client worker processes / wall time (when near the core count, the clients are the bottleneck). */
  clientCores: number;
  /** Pushes published × members − pushes received, after draining (should be 0). */
  missing: number;
  published: number;
}

export interface FanoutRatios {
  roomSize: number;
  /** Our CPU per push / Socket.IO's (target ≤ 0.5). */
  cpuVsSocketIo?: number;
  /** Our delivered rate / Socket.IO's (target ≥ 2). */
  rateVsSocketIo?: number;
  /** Our delivered rate / bare ws (target ≥ 0.4). */
  rateVsCeiling?: number;
  /** Our CPU per push / bare ws. */
  cpuVsCeiling?: number;
  /** Our CPU per push over wss:// / over ws:// (with `rtm-tls` in the servers). */
  tlsCpuVsPlain?: number;
}

export interface FanoutFigures {
  results: FanoutResult[];
  ratios: FanoutRatios[];
}

const BODY = 'benchmark message body';
const SENDER_UID = 900_000_000n;
const ridOf = (size: number, i: number): string => String(10_000 + i);

interface Publisher {
  publish(rid: string, mid: number): void;
  errors(): string | undefined;
  close(): void;
}

async function publisher(server: ServerUnderTest): Promise<Publisher> {
  if (server.kind === 'rtm' || server.kind === 'rtm-tls') {
    const gate = await RawClient.tcp(`127.0.0.1:${server.serverPort}`);
    let salt = BigInt(Date.now()) * 1_000_000n;
    let error: string | undefined;
    return {
      publish(rid, mid) {
        gate
          .signed(
            'sendroommsg',
            { from: SENDER_UID, rid: BigInt(rid), mid: BigInt(mid), mtype: 51, msg: BODY, attrs: '' },
            TEST_PID,
            TEST_SECRET,
            salt++,
          )
          .catch((e: Error) => (error ??= e.message));
      },
      errors: () => error,
      close: () => gate.close(),
    };
  }
  if (server.kind === 'socketio') {
    const socket: Socket = ioClient(`http://127.0.0.1:${server.clientPort}`, {
      transports: ['websocket'],
      reconnection: false,
      forceNew: true,
    });
    await new Promise<void>((resolve, reject) => {
      socket.once('joined', () => resolve());
      socket.once('connect_error', reject);
    });
    return {
      publish: (rid, mid) => socket.emit('pub', { rid, from: Number(SENDER_UID), mtype: 51, mid, msg: BODY, attrs: '' }),
      errors: () => undefined,
      close: () => socket.disconnect(),
    };
  }
  const ws = new WebSocket(`ws://127.0.0.1:${server.clientPort}/`);
  await new Promise<void>((resolve, reject) => {
    ws.once('message', () => resolve());
    ws.once('error', reject);
  });
  return {
    publish: (rid, mid) => ws.send(JSON.stringify({ rid, from: Number(SENDER_UID), mtype: 51, mid, msg: BODY, attrs: '' })),
    errors: () => undefined,
    close: () => ws.terminate(),
  };
}

async function countAll(workers: Worker[]): Promise<number> {
  const counts = await Promise.all(workers.map((w) => w.call<{ delivered: number }>('count')));
  return counts.reduce((s, c) => s + c.delivered, 0);
}

/** One server kind: connects max(sizes) clients once, then measures each room size in turn. */
async function benchServer(
  kind: ServerKind,
  o: Required<Omit<FanoutOptions, 'profileDir'>> & { profileDir?: string },
): Promise<FanoutResult[]> {
  const log = o.log;
  const env: Record<string, string> = { RTM_SERVER_SEND_REQUIRES_MEMBERSHIP: 'false' };
  if (o.profileDir && o.profileServers.includes(kind)) env.RTM_BENCH_CPU_PROF_DIR = `${o.profileDir}/${kind}`;
  const server = await startServerUnderTest(kind, { env });
  const workers: Worker[] = [];
  let pub: Publisher | undefined;
  try {
    const total = Math.max(...o.sizes);
    const per = Math.ceil(total / o.workers);
    const rooms = o.sizes.map((size, i) => ({ rid: ridOf(size, i), upTo: size }));
    const started = performance.now();
    let onProgress: (w: number, m: Record<string, unknown>) => void = () => undefined;
    for (let w = 0; w < o.workers; w++) {
      const worker = startWorker('./clients-worker.ts');
      worker.on('progress', (m) => onProgress(w, m));
      workers.push(worker);
    }
    await Promise.all(
      workers.map((worker, w) => {
        const uids = Array.from({ length: Math.max(0, Math.min(per, total - w * per)) }, (_, i) => String(1_000_000 + w * per + i));
        return worker.call(
          'connect',
          {
            ...clientTarget(server),
            serverEndpoint: server.serverPort ? `127.0.0.1:${server.serverPort}` : undefined,
            uids,
            rooms,
            offset: w * per,
            join: o.join,
            batchAnswers: o.answers === 'batched',
          },
          300_000,
        );
      }),
    );
    log(`  ${SERVER_LABEL[kind]}: ${fmt(total)} clients connected and in their rooms in ${fmt((performance.now() - started) / 1000, 1)} s`);
    if (server.ask) {
      const { sizes } = (await server.ask({ type: 'rooms', rids: rooms.map((r) => r.rid) })) as { sizes: Record<string, number> };
      for (const r of rooms)
        if (sizes[r.rid] !== r.upTo) throw new Error(`${kind}: room ${r.rid} has ${sizes[r.rid]} members, expected ${r.upTo}`);
    }
    pub = await publisher(server);

    const out: FanoutResult[] = [];
    let mid = 1;
    for (const [ri, size] of o.sizes.entries()) {
      const rid = ridOf(size, ri);
      const window = Math.max(2, Math.round(o.windowPushes / size));
      const completed = new Array<number>(o.workers).fill(Infinity);
      const activeOf = (w: number): number => Math.max(0, Math.min(per, size - w * per));
      let published = 0;
      let publishing = true;
      const pump = (): void => {
        if (!publishing) return;
        const min = Math.min(...completed);
        while (published - min < window) {
          pub!.publish(rid, mid++);
          published++;
        }
      };
      onProgress = (w, m) => {
        if (completed[w] !== Infinity) completed[w] = m.completed as number;
        pump();
      };
      await Promise.all(
        workers.map((worker, w) => {
          completed[w] = activeOf(w) > 0 ? 0 : Infinity;
          return worker.call('activate', { clients: activeOf(w), reportEveryMs: 5 });
        }),
      );
      pump();
      await sleep(o.warmupSeconds * 1000);
      const t0 = performance.now();
      const cpu0 = cpuMicros(server.pid);
      const wcpu0 = workers.reduce((s, w) => s + cpuMicros(w.child.pid!), 0);
      const d0 = await countAll(workers);
      const p0 = published;
      await sleep(o.seconds * 1000);
      const d1 = await countAll(workers);
      const cpu1 = cpuMicros(server.pid);
      const wcpu1 = workers.reduce((s, w) => s + cpuMicros(w.child.pid!), 0);
      const t1 = performance.now();
      const p1 = published;
      publishing = false;
      // Drain: every member gets every message (or the loss is reported).
      const drainDeadline = performance.now() + 15_000;
      while (Math.min(...completed) < published && performance.now() < drainDeadline) await sleep(20);
      const finals = await Promise.all(workers.map((w) => w.call<{ delivered: number }>('deactivate')));
      onProgress = () => undefined;
      const deliveredTotal = finals.reduce((s, f) => s + f.delivered, 0);
      const delivered = d1 - d0;
      const seconds = (t1 - t0) / 1000;
      const err = pub.errors();
      if (err) throw new Error(`${kind}: publish failed: ${err}`);
      const r: FanoutResult = {
        server: kind,
        roomSize: size,
        messagesPerSecond: +((p1 - p0) / seconds).toFixed(1),
        deliveredPerSecond: Math.round(delivered / seconds),
        serverCpuMicrosPerPush: +((cpu1 - cpu0) / delivered).toFixed(3),
        serverCores: +((cpu1 - cpu0) / 1e6 / seconds).toFixed(2),
        clientCores: +((wcpu1 - wcpu0) / 1e6 / seconds).toFixed(2),
        missing: published * size - deliveredTotal,
        published,
      };
      log(
        `  ${SERVER_LABEL[kind].padEnd(18)} room ${fmt(size).padStart(5)}: ${fmt(r.deliveredPerSecond).padStart(9)} pushes/s delivered (${fmt(r.messagesPerSecond, 1)} msgs/s), ` +
          `server CPU ${r.serverCpuMicrosPerPush.toFixed(2)} µs/push (server ${r.serverCores} cores, clients ${r.clientCores} cores), missing ${r.missing}`,
      );
      out.push(r);
      // Pushes of this room are all in; let the server settle before the next size.
      await sleep(500);
    }
    return out;
  } finally {
    pub?.close();
    await Promise.all(workers.map((w) => w.call('close', {}, 10_000).catch(() => undefined)));
    await Promise.all(workers.map((w) => w.stop()));
    await server.stop();
  }
}

const ratio = (a: number | undefined, b: number | undefined): number | undefined =>
  a !== undefined && b ? +(a / b).toFixed(2) : undefined;

export async function runFanoutBench(options: FanoutOptions = {}): Promise<FanoutFigures> {
  const o = {
    sizes: options.sizes ?? [1000, 5000],
    workers: options.workers ?? 3,
    seconds: options.seconds ?? 5,
    warmupSeconds: options.warmupSeconds ?? 1.5,
    servers: options.servers ?? (['rtm', 'socketio', 'ws'] as ServerKind[]),
    windowPushes: options.windowPushes ?? 50_000,
    join: options.join ?? 'client',
    answers: options.answers ?? 'batched',
    profileDir: options.profileDir,
    profileServers: options.profileServers ?? ['rtm'],
    log: options.log ?? (() => undefined),
  };
  const results: FanoutResult[] = [];
  for (const kind of o.servers) results.push(...(await benchServer(kind, o)));
  const ratios = o.sizes.map((roomSize) => {
    const of = (k: ServerKind) => results.find((r) => r.server === k && r.roomSize === roomSize);
    const [rtm, rtmTls, sio, ws] = [of('rtm'), of('rtm-tls'), of('socketio'), of('ws')];
    return {
      roomSize,
      cpuVsSocketIo: ratio(rtm?.serverCpuMicrosPerPush, sio?.serverCpuMicrosPerPush),
      rateVsSocketIo: ratio(rtm?.deliveredPerSecond, sio?.deliveredPerSecond),
      rateVsCeiling: ratio(rtm?.deliveredPerSecond, ws?.deliveredPerSecond),
      cpuVsCeiling: ratio(rtm?.serverCpuMicrosPerPush, ws?.serverCpuMicrosPerPush),
      tlsCpuVsPlain: ratio(rtmTls?.serverCpuMicrosPerPush, rtm?.serverCpuMicrosPerPush),
    };
  });
  return { results, ratios };
}

if (import.meta.url === `file://${process.argv[1]}`) {
  relaunchWithLoadGeneratorFlags();
  const { values } = parseArgs({
    options: {
      sizes: { type: 'string', default: '1000,5000' },
      workers: { type: 'string', default: '3' },
      seconds: { type: 'string', default: '5' },
      warmup: { type: 'string', default: '1.5' },
      servers: { type: 'string', default: 'rtm,socketio,ws' },
      'window-pushes': { type: 'string', default: '50000' },
      join: { type: 'string', default: 'client' },
      answers: { type: 'string', default: 'batched' },
      profile: { type: 'string' },
      'profile-servers': { type: 'string', default: 'rtm' },
    },
  });
  if (values.answers !== 'batched' && values.answers !== 'each')
    throw new Error(`--answers must be batched or each, not ${values.answers}`);
  const log = (line: string): void => console.log(line);
  log(
    `room fan-out: ${values.sizes} members over ${values.workers} worker processes, ${values.seconds} s measured after ${values.warmup} s warm-up, our clients' answers ${values.answers}`,
  );
  const figures = await runFanoutBench({
    sizes: values.sizes.split(',').map(Number),
    workers: Number(values.workers),
    seconds: Number(values.seconds),
    warmupSeconds: Number(values.warmup),
    servers: values.servers.split(',') as ServerKind[],
    windowPushes: Number(values['window-pushes']),
    join: values.join as 'client' | 'server',
    answers: values.answers as 'batched' | 'each',
    profileDir: values.profile,
    profileServers: values['profile-servers'].split(',') as ServerKind[],
    log,
  });
  log('');
  log(
    `server               room   delivered/s   msgs/s   CPU µs/push   server cores   client cores   missing   (${availableParallelism()} cores)`,
  );
  for (const r of figures.results) {
    log(
      `${SERVER_LABEL[r.server].padEnd(18)} ${fmt(r.roomSize).padStart(6)} ${fmt(r.deliveredPerSecond).padStart(13)} ${fmt(r.messagesPerSecond, 1).padStart(8)} ${r.serverCpuMicrosPerPush.toFixed(2).padStart(13)} ${r.serverCores.toFixed(2).padStart(14)} ${r.clientCores.toFixed(2).padStart(14)} ${String(r.missing).padStart(9)}`,
    );
  }
  log('');
  const show = (v: number | undefined, target: string): string => (v === undefined ? 'n/a' : `${v.toFixed(2)} (target ${target})`);
  for (const r of figures.ratios) {
    log(`room ${fmt(r.roomSize)}:`);
    log(`  our CPU/push ÷ Socket.IO's      ${show(r.cpuVsSocketIo, '≤ 0.50')}`);
    log(`  our delivered/s ÷ Socket.IO's   ${show(r.rateVsSocketIo, '≥ 2.00')}`);
    log(`  our delivered/s ÷ bare ws       ${show(r.rateVsCeiling, '≥ 0.40')}`);
    log(`  our CPU/push ÷ bare ws          ${show(r.cpuVsCeiling, 'for information')}`);
    if (r.tlsCpuVsPlain !== undefined) log(`  over wss:// ÷ over ws://, CPU   ${show(r.tlsCpuVsPlain, 'for information')}`);
  }
}
