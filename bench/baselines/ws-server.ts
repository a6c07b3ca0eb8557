/**
 * Baseline and ceiling: a bare `ws` broadcast server (forked by the benches, IPC channel to the
 * controlling process). Clients connect with `?rooms=a,b` and get the text message `joined`; a
 * publisher sends a JSON text message {rid, from, mtype, mid, msg, attrs}. The server encodes the
 * message once (msgpack, plus `mtime`) into one WebSocket frame and queues that same buffer on every
 * member; the queues are flushed once per event-loop turn, one socket write per connection. No
 * per-connection protocol state, acknowledgements or bounds: the Node ceiling for fan-out.
 *
 * P2P relay (the floor of bench/latency.ts): a client that connects with `?uid=<uid>` is reachable
 * by that uid; a text message {to, ...} is relayed as is, in one binary frame, to that uid's
 * connection (same per-turn flush). No parsing beyond JSON, no storage: what send → push latency
 * costs on this machine before any server work.
 *
 * RTM_BENCH_RELAY_BURN_US=<µs> (calibration): the relay spins this long on every message it
 * handles, so that its CPU per message can be set to ours and the latency bench shows how the
 * floor's tail grows with CPU per message on this host (bench/RESULTS.md, twelfth session).
 */
import { createServer } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import { pack } from 'msgpackr';
import { WebSocketServer, type WebSocket } from 'ws';
import { binaryFrame, enqueue, type Member } from './outbox.js';

const http = createServer();
const wss = new WebSocketServer({ server: http, perMessageDeflate: false });
const rooms = new Map<string, Set<Member>>();
const users = new Map<string, Member>();

const BURN_MS = Number(process.env.RTM_BENCH_RELAY_BURN_US ?? 0) / 1000;

/** Busy for `BURN_MS` (calibration, see above). */
function burn(): void {
  const end = performance.now() + BURN_MS;
  while (performance.now() < end);
}

function publish(raw: string): void {
  if (BURN_MS > 0) burn();
  const m = JSON.parse(raw) as { rid?: string; to?: string };
  if (m.to !== undefined) {
    const to = users.get(String(m.to));
    if (to) enqueue(to, binaryFrame(Buffer.from(raw)));
  } else {
    const members = rooms.get(String(m.rid));
    if (!members) return;
    const bytes = binaryFrame(pack({ ...m, mtime: Date.now() }));
    for (const member of members) enqueue(member, bytes);
  }
}

wss.on('connection', (ws: WebSocket, req) => {
  const params = new URL(req.url ?? '/', 'http://x').searchParams;
  const names = (params.get('rooms') ?? '').split(',').filter(Boolean);
  const uid = params.get('uid');
  const member: Member = { socket: (ws as unknown as { _socket: Socket })._socket, queue: [] };
  if (uid) users.set(uid, member);
  for (const rid of names) {
    let set = rooms.get(rid);
    if (!set) rooms.set(rid, (set = new Set()));
    set.add(member);
  }
  ws.on('message', (data, isBinary) => {
    if (!isBinary) publish(data.toString());
  });
  ws.on('close', () => {
    if (uid && users.get(uid) === member) users.delete(uid);
    for (const rid of names) rooms.get(rid)?.delete(member);
  });
  ws.send('joined');
});

process.on('message', (m: { type: string; id: number; rids?: string[] }) => {
  if (m.type === 'rooms') {
    const sizes = Object.fromEntries((m.rids ?? []).map((rid) => [rid, rooms.get(rid)?.size ?? 0]));
    process.send!({ id: m.id, sizes, connections: wss.clients.size });
  }
});
process.on('disconnect', () => process.exit(0));
process.on('SIGTERM', () => process.exit(0));

http.listen(0, '127.0.0.1', () => process.send!({ type: 'listening', port: (http.address() as AddressInfo).port }));
