/**
 * NatsBus: the shared Bus conformance suite with three nodes (three buses, three NATS connections,
 * one process), plus what only a real network bus has: a node that stops answering, discovery,
 * heartbeats, the `?prefix=` URL form and a clean close.
 *
 * URL: env RTM_TEST_NATS_URL, default nats://127.0.0.1:4222. Each test uses a random subject
 * prefix, so parallel runs never see each other. Unreachable → skipped with a message, except when
 * CI=true (then the tests fail).
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { describe, it } from 'node:test';
import { connect, type NatsConnection } from 'nats';
import { decodeMsgpack, encodeMsgpack } from '@rtm/fpnn';
import { busConformance, startFaultyProxy, startTestServer, until } from '@rtm/testkit';
import type { BusEvent } from '../src/bus/bus.js';
import { NatsBus } from '../src/bus/nats.js';

const URL = process.env['RTM_TEST_NATS_URL'] ?? 'nats://127.0.0.1:4222';
const CI = process.env['CI'] === 'true';

async function reachable(): Promise<string | undefined> {
  try {
    const nc = await connect({ servers: URL, timeout: 2000, reconnect: false });
    await nc.close();
    return undefined;
  } catch (err) {
    return `NATS unreachable at ${URL} (${(err as Error).message}); set RTM_TEST_NATS_URL`;
  }
}

const freshPrefix = (): string => `rtmtest_${randomBytes(6).toString('hex')}`;
const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));
const noop = (): void => {};

const unreachable = await reachable();

if (unreachable && !CI) {
  describe('NatsBus', () => {
    it('runs against a real NATS server', { skip: unreachable }, () => {});
  });
} else if (unreachable) {
  describe('NatsBus', () => {
    it('runs against a real NATS server (required when CI=true)', () => {
      assert.fail(unreachable);
    });
  });
} else {
  busConformance('nats (three nodes)', async () => {
    const subjectPrefix = freshPrefix();
    const buses = [0, 1, 2].map((i) => new NatsBus({ url: URL, subjectPrefix, nodeId: `n${i}-${subjectPrefix}`, discoveryMs: 50 }));
    return { buses, cleanup: async () => {} };
  });

  describe('NatsBus specifics', () => {
    it('a node that stops answering is left out after queryTimeoutMs; the others still count', async () => {
      const subjectPrefix = freshPrefix();
      const a = new NatsBus({ url: URL, subjectPrefix, queryTimeoutMs: 1000, discoveryMs: 50 });
      const b = new NatsBus({ url: URL, subjectPrefix, queryTimeoutMs: 1000, discoveryMs: 50 });
      // A "hung" node: it announces itself like a node but never answers a query.
      const zombie: NatsConnection = await connect({ servers: URL });
      try {
        await a.start(noop, (_pid, uids) => uids.filter((u) => u === 1n));
        await b.start(noop, (_pid, uids) => uids.filter((u) => u === 2n));
        zombie.publish(`${subjectPrefix}.node`, encodeMsgpack({ node: 'zombie', kind: 'hb' }));
        await zombie.flush();
        await until(() => a.liveNodes.includes('zombie') && a.liveNodes.includes(b.nodeId));
        assert.ok(a.liveNodes.includes('zombie'));
        const t0 = Date.now();
        const answer = await a.queryOnline(1, [1n, 2n, 3n]);
        const elapsed = Date.now() - t0;
        assert.deepEqual(answer, [1n, 2n]);
        assert.ok(elapsed >= 950 && elapsed < 3000, `waited ${elapsed} ms for the silent node`);
        // Without the silent node the answer comes as soon as b has answered.
        zombie.publish(`${subjectPrefix}.node`, encodeMsgpack({ node: 'zombie', kind: 'bye' }));
        await zombie.flush();
        await until(() => !a.liveNodes.includes('zombie'));
        const t1 = Date.now();
        assert.deepEqual(await a.queryOnline(1, [3n, 2n, 1n]), [2n, 1n], 'input order kept');
        assert.ok(Date.now() - t1 < 900, 'answered before queryTimeoutMs');
      } finally {
        await zombie.close();
        await Promise.all([a.close(), b.close()]);
      }
    });

    it('a NATS that goes silent (a partition, no reset) is noticed within seconds: connected turns false', async () => {
      // A partition: nothing passes either way, and no connection is reset.
      const target = new globalThis.URL(URL);
      const proxy = await startFaultyProxy(target.hostname, Number(target.port || 4222));
      const bus = new NatsBus({ url: `nats://127.0.0.1:${proxy.port}`, subjectPrefix: freshPrefix() });
      try {
        await bus.start(noop, () => []);
        assert.equal(bus.connected, true);
        proxy.holdRequests = proxy.holdAnswers = true;
        const t0 = Date.now();
        while (bus.connected && Date.now() - t0 < 25_000) await sleep(250);
        assert.equal(bus.connected, false, 'still "connected" 25 s into the silence');
        assert.ok(Date.now() - t0 < 20_000, `noticed after ${Date.now() - t0} ms`);
      } finally {
        // Cut first: a client closing over a silent connection would wait for it.
        proxy.close();
        await bus.close();
        proxy.cut(); // any a reconnect opened meanwhile
      }
    });

    it('a node unheard for three heartbeats is gone; heartbeats keep live nodes known', async () => {
      const subjectPrefix = freshPrefix();
      const a = new NatsBus({ url: URL, subjectPrefix, heartbeatMs: 100, discoveryMs: 30 });
      const b = new NatsBus({ url: URL, subjectPrefix, heartbeatMs: 100, discoveryMs: 30 });
      const zombie = await connect({ servers: URL });
      try {
        await a.start(noop, () => []);
        await b.start(noop, () => []);
        await until(() => b.liveNodes.length > 0); // on a loaded machine the answer may come after discoveryMs
        assert.deepEqual(a.liveNodes, [b.nodeId], 'a learnt b from its hello');
        assert.deepEqual(b.liveNodes, [a.nodeId], 'b learnt a from the answer to its hello');
        zombie.publish(`${subjectPrefix}.node`, encodeMsgpack({ node: 'zombie', kind: 'hb' }));
        await zombie.flush();
        await until(() => a.liveNodes.includes('zombie'));
        await sleep(350); // > 3 heartbeats
        await until(() => !a.liveNodes.includes('zombie'));
        assert.deepEqual(a.liveNodes, [b.nodeId], 'the silent node expired, b is still live');
      } finally {
        await zombie.close();
        await Promise.all([a.close(), b.close()]);
      }
    });

    it('events go on <prefix>.ev.<pid> as msgpack with int64 ids; ?prefix= in the URL sets the prefix', async () => {
      const subjectPrefix = freshPrefix();
      const bus = new NatsBus({ url: `${URL}?prefix=${subjectPrefix}`, discoveryMs: 10 });
      assert.equal(bus.subjectPrefix, subjectPrefix);
      const spy = await connect({ servers: URL });
      const seen: { subject: string; event: unknown }[] = [];
      spy.subscribe(`${subjectPrefix}.ev.>`, { callback: (_e, m) => seen.push({ subject: m.subject, event: decodeMsgpack(m.data) }) });
      await spy.flush();
      try {
        assert.equal(bus.connected, false);
        await bus.start(noop, () => []);
        assert.equal(bus.connected, true);
        const event: BusEvent = { type: 'kickout', pid: 1234, uid: 2n ** 60n };
        bus.publish(event);
        for (let i = 0; i < 100 && seen.length === 0; i++) await sleep(10);
        assert.deepEqual(seen, [{ subject: `${subjectPrefix}.ev.1234`, event: { type: 'kickout', pid: 1234, uid: 2n ** 60n } }]);
      } finally {
        await spy.close();
        await bus.close();
      }
      assert.equal(bus.connected, false);
    });

    it('an undecodable event is reported to onError and skipped; the next one is handled', async () => {
      const subjectPrefix = freshPrefix();
      const errors: string[] = [];
      const got: BusEvent[] = [];
      const bus = new NatsBus({ url: URL, subjectPrefix, discoveryMs: 10, onError: (_err, context) => errors.push(context) });
      const rogue = await connect({ servers: URL });
      try {
        await bus.start(
          (e) => got.push(e),
          () => [],
        );
        rogue.publish(`${subjectPrefix}.ev.1`, new Uint8Array([0xc1]));
        rogue.publish(`${subjectPrefix}.ev.1`, encodeMsgpack({ type: 'nonsense' }));
        rogue.publish(`${subjectPrefix}.ev.1`, encodeMsgpack({ type: 'kickout', pid: 1, uid: 5 }));
        await rogue.flush();
        for (let i = 0; i < 100 && got.length === 0; i++) await sleep(10);
        assert.deepEqual(got, [{ type: 'kickout', pid: 1, uid: 5n }], 'a small int still becomes a bigint');
        assert.equal(errors.filter((c) => c.startsWith('undecodable event')).length, 2);
      } finally {
        await rogue.close();
        await bus.close();
      }
    });

    it('the first node on a prefix starts without an error: the "no responders" status NATS sends for its hello is no message', async () => {
      const subjectPrefix = freshPrefix();
      const errors: string[] = [];
      const onError = (err: unknown, context: string): number => errors.push(`${context}: ${(err as Error)?.message}`);
      const first = new NatsBus({ url: URL, subjectPrefix, discoveryMs: 100, onError });
      const second = new NatsBus({ url: URL, subjectPrefix, discoveryMs: 100, onError });
      try {
        await first.start(noop, () => []);
        await second.start(noop, () => []);
        await until(() => second.liveNodes.length > 0); // on a loaded machine the answer may come after discoveryMs
        assert.deepEqual(second.liveNodes, [first.nodeId], 'the hello is still answered by a live node');
        await sleep(50);
        assert.deepEqual(errors, []);
      } finally {
        await second.close();
        await first.close();
      }
    });

    it('close() leaves no timer or connection behind', async () => {
      const timers = (): number => process.getActiveResourcesInfo().filter((r) => r === 'Timeout').length;
      const before = timers();
      const subjectPrefix = freshPrefix();
      const buses = [0, 1].map(() => new NatsBus({ url: URL, subjectPrefix, discoveryMs: 10, queryTimeoutMs: 5000 }));
      await Promise.all(buses.map((b) => b.start(noop, () => [])));
      const pendingQuery = buses[0]!.queryOnline(1, [1n]); // b's answer will come; close first anyway
      await Promise.all(buses.map((b) => b.close()));
      assert.deepEqual(await pendingQuery, []);
      await sleep(20);
      assert.ok(timers() <= before, `timers before ${before}, after ${timers()}`);
    });

    it('the server takes the prefix of RTM_BUS (?prefix=) over RTM_BUS_PREFIX, and RTM_BUS_PREFIX without one', async () => {
      const [inUrl, inVariable] = [freshPrefix(), freshPrefix()];
      const fromUrl = await startTestServer({ bus: `${URL}?prefix=${inUrl}`, busPrefix: inVariable });
      const fromVariable = await startTestServer({ bus: URL, busPrefix: inVariable });
      try {
        assert.equal((fromUrl.services.bus as NatsBus).subjectPrefix, inUrl);
        assert.equal((fromVariable.services.bus as NatsBus).subjectPrefix, inVariable);
      } finally {
        await fromUrl.close();
        await fromVariable.close();
      }
    });

    it('rejects bad options', () => {
      assert.throws(() => new NatsBus({ url: 'http://x' }), /nats:\/\//);
      assert.throws(() => new NatsBus({ url: URL, subjectPrefix: 'a b' }), /subjectPrefix/);
      assert.throws(() => new NatsBus({ url: URL, subjectPrefix: 'a.>' }), /subjectPrefix/);
      assert.throws(() => new NatsBus({ url: URL, queryTimeoutMs: 0 }), /queryTimeoutMs/);
    });
  });
}
