import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { RtmErrorCode } from '@rtm/fpnn';
import { LocalBus } from '../src/bus/local.js';
import type { BusEvent } from '../src/bus/bus.js';
import { DEFAULT_CONFIG, type ServerConfig } from '../src/config.js';
import { Metrics } from '../src/observability/metrics.js';
import { Messaging, type SendRequest } from '../src/services/messaging.js';
import { GroupMembers } from '../src/services/group-members.js';
import { LocalPresence } from '../src/services/presence.js';
import { SqliteStore } from '../src/store/sqlite.js';
import { MessageKind, type Store } from '../src/store/store.js';

// Messaging.send takes a path without promises when the store answers its checks at once (the
// embedded store) and awaits them otherwise (a store behind a network): both must refuse the same
// sends with the same codes, in the same order, and store and publish the same messages.

const PID = 7;
const [A, B, C] = [2n ** 60n + 1n, 2n ** 60n + 2n, 2n ** 60n + 3n];

/** The same store, with the send checks answered by promises as PostgresStore does. */
function asyncChecks(store: SqliteStore): Store {
  return new Proxy(store, {
    get(target, key, receiver) {
      const value = Reflect.get(target, key, receiver) as unknown;
      if (typeof value !== 'function') return value;
      if (key === 'isProjectBlack' || key === 'blockedBy') {
        return async (...args: unknown[]) => {
          await new Promise((r) => setImmediate(r));
          return (value as (...a: unknown[]) => unknown).apply(target, args);
        };
      }
      return (value as (...a: unknown[]) => unknown).bind(target);
    },
  }) as Store;
}

for (const mode of ['synchronous checks (SQLite)', 'checks answered by promises']) {
  describe(`Messaging.send with ${mode}`, () => {
    let sqlite: SqliteStore;
    let messaging: Messaging;
    const published: BusEvent[] = [];
    let mid = 1n;
    const p2p = (from: bigint, to: bigint, extra: Partial<SendRequest> = {}): SendRequest => ({
      pid: PID,
      kind: MessageKind.P2P,
      from,
      to,
      mid: mid++,
      mtype: 30,
      msg: 'hello',
      attrs: '',
      gate: 'client',
      ...extra,
    });

    before(async () => {
      sqlite = new SqliteStore({ dataDir: ':memory:' });
      await sqlite.init();
      const store = mode.startsWith('synchronous') ? sqlite : asyncChecks(sqlite);
      const bus = new LocalBus();
      await bus.start(
        (e) => published.push(e),
        () => [],
      );
      const config = { ...DEFAULT_CONFIG, projects: [] } as ServerConfig;
      messaging = new Messaging(config, store, bus, new LocalPresence(), new Metrics(false), new GroupMembers(store, bus));
    });
    after(() => sqlite.close());

    it('stores and publishes a p2p message, answers its mtime, and a resend only answers', async () => {
      published.length = 0;
      const req = p2p(A, B);
      const mtime = await messaging.send(req);
      assert.equal(typeof mtime, 'bigint');
      assert.equal(published.length, 1);
      const event = published[0]!;
      assert.equal(event.type, 'message');
      if (event.type !== 'message') return;
      assert.equal(event.message.from, A);
      assert.equal(event.message.to, B);
      assert.equal(event.message.mtime, mtime);
      assert.deepEqual(event.recipients, [B]);
      assert.equal(await messaging.send({ ...req }), mtime, 'the resend answers the original mtime');
      assert.equal(published.length, 1, 'and is not delivered again');
    });

    it('refuses, in order: project blacklist, then sending to oneself, then a receiver who blocked the sender', async () => {
      published.length = 0;
      await sqlite.addBlacks(PID, B, [A]); // B blocks A
      await assert.rejects(messaging.send(p2p(A, B)), { code: RtmErrorCode.BLOCKED_USER });
      await assert.rejects(messaging.send(p2p(A, A)), { code: RtmErrorCode.SEND_TO_SELF });
      await sqlite.addProjectBlack(PID, A);
      await assert.rejects(messaging.send(p2p(A, A)), { code: RtmErrorCode.AUTH_DENIED });
      await assert.rejects(messaging.send(p2p(A, B)), { code: RtmErrorCode.AUTH_DENIED });
      await sqlite.removeProjectBlack(PID, A);
      await assert.rejects(messaging.send(p2p(A, B)), { code: RtmErrorCode.BLOCKED_USER });
      // Refusing a send to oneself is the client gate's rule; a backend may do it.
      await messaging.send(p2p(A, A, { gate: 'server' }));
      assert.equal(published.length, 1, 'only the server-gate send was published');
      assert.equal((await messaging.send(p2p(A, C))) > 0n, true, 'C did not block A');
    });

    it('refuses bad input before it asks the store (mtype, size)', async () => {
      await assert.rejects(messaging.send(p2p(A, C, { mtype: 0 })), { code: RtmErrorCode.INVALID_MTYPE });
      await assert.rejects(messaging.send(p2p(A, C, { msg: 'x'.repeat(DEFAULT_CONFIG.limits.maxMsgBytes + 1) })), {
        code: RtmErrorCode.LARGE_MESSAGE_OR_ATTRS,
      });
    });

    it('multi-user sends skip receivers who blocked the sender, through the same checks', async () => {
      published.length = 0;
      const mtime = await messaging.send({ ...p2p(A, 0n), to: undefined, tos: [B, C, C] });
      assert.equal(typeof mtime, 'bigint');
      assert.deepEqual(
        published.map((e) => (e.type === 'message' ? e.message.to : undefined)),
        [C],
      );
    });
  });
}
