import assert from 'node:assert/strict';
import { connect, type Socket } from 'node:net';
import { describe, it } from 'node:test';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import type { Payload } from '@rtm/fpnn';
import { RawClient, startTestServer, TEST_PID, TEST_SECRET, until, type TestServer } from '@rtm/testkit';
import { Listener } from '../src/transport/listener.js';

// Churn and memory (scripts/soak.ts is the long version): what the server keeps per connection,
// user, room, group or key goes when its reason ends, so that endless churn (users and backends
// coming and going, ever-new ids) does not grow the process.

setFlagsFromString('--expose-gc');
const gc = runInNewContext('gc') as () => void;

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
let nextId = 9n << 56n; // ids above 2^53, none used before

describe('churn: nothing kept after its reason ends', () => {
  it('a connection closed before its first bytes (a TCP health check) is not held until the sniff timeout', async () => {
    // The sniff timer (RTM_IDLE_TIMEOUT_MS, here 60 s) held every such socket, ~1.7 KB each, for
    // its whole length: a balancer's health checks or a scanner kept thousands alive.
    const listener = new Listener({
      host: '127.0.0.1',
      port: 0,
      maxFrameBytes: 1 << 20,
      sniffTimeoutMs: 60_000,
      httpRequestTimeoutMs: 60_000,
      onTransport: (t) => t.close(),
    });
    const port = await listener.listen();
    const held = (listener as unknown as { sockets: Set<Socket> }).sockets;
    try {
      const n = 20;
      const clients = await Promise.all(
        Array.from(
          { length: n },
          () =>
            new Promise<Socket>((resolve, reject) => {
              const s = connect(port, '127.0.0.1', () => resolve(s));
              s.once('error', reject);
            }),
        ),
      );
      assert.ok(await until(() => held.size === n), `the listener took ${held.size} of ${n} connections`);
      const refs = [...held].map((s) => new WeakRef(s));
      for (const c of clients) c.destroy();
      assert.ok(await until(() => held.size === 0), 'the listener saw every close');
      for (let i = 0; i < 5 && refs.some((r) => r.deref() !== undefined); i++) {
        await new Promise((r) => setImmediate(r));
        gc();
      }
      assert.equal(refs.filter((r) => r.deref() !== undefined).length, 0, 'closed sockets still held (by their sniff timers)');
    } finally {
      listener.destroyAll();
      await listener.stopAccepting();
    }
  });

  it(
    'after users, devices and backends come and go every way, every per-user, per-room, per-group structure is empty',
    { timeout: 30_000 },
    async () => {
      const GRACE_MS = 150;
      const server: TestServer = await startTestServer({ logoutGraceMs: GRACE_MS });
      const open: RawClient[] = [];
      const track = <T extends RawClient>(c: T): T => (open.push(c), c);
      try {
        const backend = track(await RawClient.tcp(server.serverEndpoint));
        const sign = (b: RawClient, method: string, payload: Payload) => b.signed(method, payload, TEST_PID, TEST_SECRET);
        const login = async (uid: bigint, tcp: boolean): Promise<RawClient> => {
          if (!tcp) return track(await RawClient.loggedIn(server.clientEndpoint, backend, uid));
          const { token } = await sign(backend, 'gettoken', { uid });
          const c = track(await RawClient.tcp(server.clientEndpoint));
          assert.deepEqual(await c.quest('auth', { pid: TEST_PID, uid, token }), { ok: true });
          return c;
        };
        for (let i = 0; i < 24; i++) {
          const [uid, buddy, rid, gid, mid] = [++nextId, ++nextId, ++nextId, ++nextId, ++nextId];
          // A backend of its own, listening to this round's ids and events, gone at the end.
          const listener = track(i % 2 ? await RawClient.websocket(server.serverEndpoint) : await RawClient.tcp(server.serverEndpoint));
          await sign(listener, 'setlisten', { p2p: i % 3 === 0, uids: [uid], rids: [rid], gids: [gid], events: ['login', 'logout'] });
          const a = await login(uid, i % 2 === 0);
          const b = await login(buddy, i % 3 === 0);
          await a.quest('enterroom', { rid });
          await b.quest('enterroom', { rid });
          await sign(backend, 'addgroupmembers', { gid, uids: [uid, buddy] });
          await a.quest('sendmsg', { to: buddy, mid, mtype: 30, msg: 'p2p', attrs: '' });
          await a.quest('sendroommsg', { rid, mid, mtype: 30, msg: 'room', attrs: '' });
          await a.quest('sendgroupmsg', { gid, mid, mtype: 30, msg: 'group', attrs: '' });
          await sign(backend, 'delgroup', { gid });
          // A login abandoned half-way: auth sent, the socket gone before the answer.
          const { token } = await sign(backend, 'gettoken', { uid: buddy });
          const abandoned = await RawClient.websocket(server.clientEndpoint);
          void abandoned.quest('auth', { pid: TEST_PID, uid: buddy, token }).catch(() => undefined);
          abandoned.close();
          switch (i % 6) {
            case 0:
              await a.bye();
              break;
            case 1:
              await a.drop(); // its grace period runs out
              break;
            case 2: {
              // Dropped, back within the grace period, then gone for good.
              await a.drop();
              const back = await login(uid, false);
              await back.quest('getunread', {});
              await back.drop();
              break;
            }
            case 3:
              await sign(backend, 'kickout', { uid });
              await a.closed;
              break;
            case 4: {
              // A second device closes the first one (client kickout), then says bye.
              const second = await login(uid, true);
              await second.quest('kickout', {});
              await a.closed;
              await second.bye();
              break;
            }
            default:
              await a.quest('leaveroom', { rid });
              await a.drop();
          }
          if (i % 2) await b.bye();
          else await b.drop();
          await listener.drop();
        }
        await backend.drop();

        const services = server.services as unknown as {
          presence: Record<'sessions' | 'roomMembers' | 'userRooms' | 'roomConns', { projects: Map<number, Map<bigint, unknown>> }> & {
            sessionCount: number;
          };
          sessions: Record<'grace' | 'epochs' | 'resuming', Map<string, unknown>> & {
            ending: Set<unknown>;
            records: { changes: Map<string, unknown> };
          };
          listeners: { byProject: Map<number, Set<unknown>> };
          groups: Record<'cached' | 'loading', Map<string, unknown>>;
          store: { conn: { prepare(sql: string): { get(): { n: number | bigint } } } };
        };
        const { presence, sessions } = services;
        const sizes = (): Record<string, number> => {
          const entries = (m: { projects: Map<number, Map<bigint, unknown>> }) => [...m.projects.values()].reduce((n, x) => n + x.size, 0);
          const rows = (table: string) => Number(services.store.conn.prepare(`SELECT COUNT(*) AS n FROM ${table}`).get().n);
          return {
            'presence.sessions': entries(presence.sessions),
            'presence.roomMembers': entries(presence.roomMembers),
            'presence.userRooms': entries(presence.userRooms),
            'presence.roomConns': entries(presence.roomConns),
            'sessions.grace': sessions.grace.size,
            'sessions.epochs': sessions.epochs.size,
            'sessions.ending': sessions.ending.size,
            'sessions.resuming': sessions.resuming.size,
            'sessions.records.changes': sessions.records.changes.size,
            'listeners (connections listening)': [...services.listeners.byProject.values()].reduce((n, s) => n + s.size, 0),
            'groups.cached': services.groups.cached.size,
            'groups.loading': services.groups.loading.size,
            'rows room_members': rows('room_members'),
            'rows node_presences': rows('node_presences'),
            'rows presence_ends': rows('presence_ends'),
          };
        };
        const empty = () => Object.values(sizes()).every((n) => n === 0);
        // Every session closed, every grace period run out, every presence end written.
        await until(empty, 10_000);
        await sleep(GRACE_MS); // nothing comes back later
        assert.deepEqual(sizes(), Object.fromEntries(Object.keys(sizes()).map((k) => [k, 0])));
      } finally {
        for (const c of open) c.close();
        await server.close();
      }
    },
  );
});
