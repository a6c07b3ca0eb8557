/**
 * Worker process: holds a share of the connections of the fan-out and memory benches (our server,
 * Socket.IO or bare ws), logs them in, puts them in rooms, counts the pushes each one receives and
 * reports progress to the controlling process.
 *
 * Commands (IPC): connect, activate, count, close. See bench/fanout.ts and bench/memory.ts.
 */
import { RawClient, TEST_PID, TEST_SECRET } from '@rtm/testkit';
import type { Socket } from 'socket.io-client';
import type WebSocket from 'ws';
import { fetchTokens, pool, report, rtmLogin, serveIpc, socketIoConnect, wsConnect, type FpnnWsClient } from './clients.js';

type Kind = 'rtm' | 'socketio' | 'ws';

interface ConnectCommand {
  kind: Kind;
  clientEndpoint: string;
  serverEndpoint?: string;
  /** uids (decimal strings) of this worker's clients, in order. */
  uids: string[];
  /** Rooms per client: client i joins every room whose `upTo` is above its index `offset + i`. */
  rooms: { rid: string; upTo: number }[];
  offset: number;
  /** RTM: join with the client method `enterroom` or the server-gate `addroommember`. */
  join?: 'client' | 'server';
  /** RTM: answer the pushes of one turn in one write (default) or each in its own. */
  batchAnswers?: boolean;
  /** RTM: connect over wss:// (`clientEndpoint` is then the TLS port), trusting this PEM certificate. */
  tlsCa?: string;
  concurrency?: number;
}

const rtmClients: FpnnWsClient[] = [];
const ioClients: Socket[] = [];
const wsClients: WebSocket[] = [];
let counts = new Float64Array(0);
let active = 0;
let reporter: NodeJS.Timeout | undefined;

function closeAll(): void {
  if (reporter) clearInterval(reporter);
  for (const c of rtmClients) c.close();
  for (const s of ioClients) s.disconnect();
  for (const w of wsClients) w.terminate();
  rtmClients.length = ioClients.length = wsClients.length = 0;
}

async function connect(cmd: ConnectCommand): Promise<{ connected: number; ms: number }> {
  const started = performance.now();
  const n = cmd.uids.length;
  counts = new Float64Array(n);
  const roomsOf = (i: number): string[] => cmd.rooms.filter((r) => cmd.offset + i < r.upTo).map((r) => r.rid);
  const indexes = Array.from({ length: n }, (_, i) => i);
  const limit = cmd.concurrency ?? 100;
  if (cmd.kind === 'rtm') {
    const uids = cmd.uids.map(BigInt);
    const tokens = await fetchTokens(cmd.serverEndpoint!, uids);
    const clients = await pool(indexes, limit, async (i) => {
      const c = await rtmLogin(cmd.clientEndpoint, uids[i]!, tokens[i]!, cmd.batchAnswers ?? true, cmd.tlsCa);
      c.onPush = (frame) => {
        if (frame.method === 'pushroommsg') counts[i]!++;
      };
      if (cmd.join !== 'server') for (const rid of roomsOf(i)) await c.quest('enterroom', { rid: BigInt(rid) });
      return c;
    });
    rtmClients.push(...clients);
    if (cmd.join === 'server') {
      const gate = await RawClient.tcp(cmd.serverEndpoint!);
      let salt = BigInt(Date.now()) * 1_000_000n + BigInt(process.pid % 1000) * 1000n;
      const joins = indexes.flatMap((i) => roomsOf(i).map((rid) => ({ uid: uids[i]!, rid: BigInt(rid) })));
      await pool(joins, 64, (j) => gate.signed('addroommember', j, TEST_PID, TEST_SECRET, salt++));
      gate.close();
    }
  } else if (cmd.kind === 'socketio') {
    const sockets = await pool(indexes, limit, async (i) => {
      const s = await socketIoConnect(cmd.clientEndpoint, roomsOf(i));
      s.on('m', () => counts[i]!++);
      return s;
    });
    ioClients.push(...sockets);
  } else {
    const sockets = await pool(indexes, limit, async (i) => {
      const w = await wsConnect(cmd.clientEndpoint, roomsOf(i));
      w.on('message', () => counts[i]!++);
      return w;
    });
    wsClients.push(...sockets);
  }
  return { connected: n, ms: Math.round(performance.now() - started) };
}

function progress(): { completed: number; delivered: number } {
  let delivered = 0;
  for (let i = 0; i < counts.length; i++) delivered += counts[i]!;
  let completed = Infinity;
  for (let i = 0; i < active; i++) if (counts[i]! < completed) completed = counts[i]!;
  return { completed: active === 0 ? 0 : completed, delivered };
}

serveIpc(
  {
    connect: (m) => connect(m as unknown as ConnectCommand),
    /** Zeroes the counters; the first `clients` local clients are in the room being measured. */
    activate: (m) => {
      counts.fill(0);
      active = Math.min(m.clients as number, counts.length);
      if (reporter) clearInterval(reporter);
      const every = (m.reportEveryMs as number | undefined) ?? 10;
      if (every > 0) reporter = setInterval(() => report({ type: 'progress', ...progress() }), every);
      return {};
    },
    count: () => progress(),
    deactivate: () => {
      if (reporter) clearInterval(reporter);
      reporter = undefined;
      return progress();
    },
    close: () => {
      closeAll();
      return {};
    },
  },
  closeAll,
);
