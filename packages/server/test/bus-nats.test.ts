/**
 * NatsBus: the shared Bus conformance suite with three nodes (three buses, three NATS connections,
 * one process), plus what only a real network bus has: a node that stops answering, discovery,
 * heartbeats, outages of NATS (the queue, held on reconnect until the peers are back), the
 * `?prefix=` URL form and a clean close.
 *
 * URL: env RTM_TEST_NATS_URL, default nats://127.0.0.1:4222. Each test uses a random subject
 * prefix, so parallel runs never see each other. Unreachable → skipped with a message, except when
 * CI=true (then the tests fail).
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { connect, type NatsConnection } from 'nats';
import { decodeMsgpack, encodeMsgpack } from '@rtm/fpnn';
import { busConformance, type FaultyProxy, startFaultyProxy, startTestServer, until, whenAvailable } from '@rtm/testkit';
import type { BusEvent, BusReconnect } from '../src/bus/bus.js';
import { NatsBus } from '../src/bus/nats.js';
import { createLogger } from '../src/observability/logger.js';
import { MessageKind } from '../src/store/store.js';

const URL = process.env['RTM_TEST_NATS_URL'] ?? 'nats://127.0.0.1:4222';

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

const kickout = (uid: bigint): BusEvent => ({ type: 'kickout', pid: 1, uid });
const uidOf = (e: BusEvent): bigint => (e.type === 'kickout' ? e.uid : -1n);

/** A plain NATS connection that sees, on NATS itself, the nodes' hellos and the events they send. */
async function spyOn(subjectPrefix: string): Promise<{ hellos: string[]; events: bigint[]; close(): Promise<void> }> {
  const nc = await connect({ servers: URL });
  const hellos: string[] = [];
  const events: bigint[] = [];
  nc.subscribe(`${subjectPrefix}.node`, {
    callback: (_e, m) => {
      const a = decodeMsgpack(m.data) as { node: string; kind: string };
      if (a.kind === 'hello') hellos.push(a.node);
    },
  });
  nc.subscribe(`${subjectPrefix}.ev.>`, {
    callback: (_e, m) => void events.push(BigInt((decodeMsgpack(m.data) as { uid: number | bigint }).uid)),
  });
  await nc.flush();
  return { hellos, events, close: () => nc.close() };
}

/** A faulty proxy in front of NATS (`nats://127.0.0.1:<its port>` reaches NATS through it). */
function natsProxy(): Promise<FaultyProxy> {
  const target = new globalThis.URL(URL);
  return startFaultyProxy(target.hostname, Number(target.port || 4222));
}

/**
 * Two faulty proxies in front of NATS (`urls`: through each), a fresh subject prefix and a spy on
 * it; `close(buses)` ends the spy, the buses, then the proxies.
 */
async function behindTwoProxies() {
  const proxies = await Promise.all([0, 1].map(() => natsProxy()));
  const urls = proxies.map((p) => `nats://127.0.0.1:${p.port}`);
  const subjectPrefix = freshPrefix();
  const spy = await spyOn(subjectPrefix);
  const close = async (buses: NatsBus[]): Promise<void> => {
    await spy.close();
    await Promise.all(buses.map((b) => b.close()));
    for (const p of proxies) p.close();
  };
  return { proxies, urls, subjectPrefix, spy, close };
}

/** NATS goes away under the buses behind `proxies`, as in a restart of NATS (connections cut, new ones refused), until they notice. */
async function restartUnder(proxies: FaultyProxy[], buses: NatsBus[]): Promise<void> {
  for (const p of proxies) {
    p.refuse = true;
    p.cut();
  }
  assert.ok(await until(() => buses.every((b) => !b.connected), 5000), 'every bus lost NATS');
}

const unreachable = await reachable();

whenAvailable(unreachable, 'NatsBus', 'runs against a real NATS server', () => {
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
      const proxy = await natsProxy();
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

    /** A message event of about `bytes` (a room message's push to every node). */
    const messageEvent = (i: number, bytes: number): BusEvent => ({
      type: 'message',
      message: {
        id: BigInt(i),
        pid: 1,
        kind: MessageKind.P2P,
        from: 1n,
        to: 2n,
        mid: BigInt(i),
        mtype: 30,
        msg: 'x'.repeat(bytes),
        attrs: '',
        mtime: 1n,
      },
      recipients: [2n],
    });

    it('a partition under traffic (the buffers fill) is noticed as an idle one is: nats.js does not wait for ever to flush a stale connection', async () => {
      const proxy = await natsProxy();
      // Pings every second, not 5: the same two missed pings, a fifth of the test's wait.
      const bus = new NatsBus({ url: `nats://127.0.0.1:${proxy.port}`, subjectPrefix: freshPrefix(), pingIntervalMs: 1000 });
      let i = 0;
      const traffic = setInterval(() => {
        for (let k = 0; k < 10; k++) bus.publish(messageEvent(i++, 1000)); // 1,000 events/s, 1 MB/s
      }, 10);
      try {
        await bus.start(noop, () => []);
        proxy.stall();
        const t0 = Date.now();
        while (bus.connected && Date.now() - t0 < 30_000) await sleep(250);
        assert.equal(bus.connected, false, `still "connected" ${Date.now() - t0} ms into the partition`);
        assert.ok(Date.now() - t0 < 6000, `noticed after ${Date.now() - t0} ms`);
        const queued = bus.queueStats.queuedEvents;
        await sleep(300);
        assert.ok(bus.queueStats.queuedEvents > queued, 'later events wait in the outage queue');
      } finally {
        clearInterval(traffic);
        proxy.close();
        await bus.close();
      }
    });

    it('a partition not noticed yet holds at most maxUnsentBytes in nats.js: past them the connection is dropped as dead', async () => {
      const proxy = await natsProxy();
      const errors: string[] = [];
      const bus = new NatsBus({
        url: `nats://127.0.0.1:${proxy.port}`,
        subjectPrefix: freshPrefix(),
        maxUnsentBytes: 1024 * 1024,
        onError: (err) => errors.push((err as Error).message),
      });
      try {
        await bus.start(noop, () => []);
        proxy.stall();
        const t0 = Date.now();
        // 1 MB a turn: the kernel's buffers fill within a few turns, then nats.js's socket holds the rest.
        for (let i = 0; bus.connected && Date.now() - t0 < 10_000; i++) {
          for (let k = 0; k < 1000; k++) bus.publish(messageEvent(i * 1000 + k, 1000));
          await sleep(20);
        }
        assert.equal(bus.connected, false, 'dropped as dead');
        assert.ok(Date.now() - t0 < 5000, `dropped after ${Date.now() - t0} ms, long before the pings would tell`);
        assert.ok(
          errors.some((e) => /NATS has not read \d+ bytes of this node's \(over 1048576\): dropping the connection as dead/.test(e)),
          errors.join('\n'),
        );
      } finally {
        proxy.close();
        await bus.close();
      }
    });

    it('once a silent partition heals, the bus is back within seconds, not after the 20 s a connection attempt may wait', async () => {
      const proxy = await natsProxy();
      // A fifth of the defaults (5 s each), so that the test waits a fifth as long.
      const bus = new NatsBus({
        url: `nats://127.0.0.1:${proxy.port}`,
        subjectPrefix: freshPrefix(),
        pingIntervalMs: 1000,
        connectTimeoutMs: 1000,
      });
      try {
        await bus.start(noop, () => []);
        proxy.holdRequests = proxy.holdAnswers = true;
        const t0 = Date.now();
        while (bus.connected && Date.now() - t0 < 25_000) await sleep(250);
        assert.equal(bus.connected, false, 'the silence noticed');
        // A reconnect attempt is under way into the silence (its bytes are lost, as in a partition).
        await sleep(1000);
        proxy.holdRequests = proxy.holdAnswers = false;
        const healed = Date.now();
        while (!bus.connected && Date.now() - healed < 25_000) await sleep(100);
        assert.equal(bus.connected, true, 'reconnected');
        // An attempt into the silence gives up after connectTimeoutMs, then the next one connects.
        assert.ok(Date.now() - healed < 5000, `reconnected ${Date.now() - healed} ms after the partition healed`);
      } finally {
        // Healed first, closed over it: the bye goes out, and the close needs no drain timeout.
        proxy.holdRequests = proxy.holdAnswers = false;
        await bus.close();
        proxy.close();
      }
    });

    it('close() over a NATS gone silent but not noticed yet ends within seconds, and nothing reconnects afterwards', async () => {
      const proxy = await natsProxy();
      const errors: string[] = [];
      const bus = new NatsBus({
        url: `nats://127.0.0.1:${proxy.port}`,
        subjectPrefix: freshPrefix(),
        onError: (err, context) => errors.push(`${context}: ${(err as Error).message}`),
      });
      try {
        await bus.start(noop, () => []);
        proxy.holdRequests = proxy.holdAnswers = true;
        await sleep(300);
        assert.equal(bus.connected, true, 'not noticed yet');
        const t0 = Date.now();
        await bus.close();
        assert.ok(Date.now() - t0 < 4000, `close() took ${Date.now() - t0} ms`);
        assert.ok(
          errors.some((e) => /did not confirm the drain within 2000 ms/.test(e)),
          errors.join(' | '),
        );
        // nats.js's drain alone left the connection reconnecting for ever.
        const nc = (bus as unknown as { nc: { isClosed(): boolean } }).nc;
        assert.equal(nc.isClosed(), true, 'the NATS connection is closed');
      } finally {
        proxy.close();
      }
    });

    it('close() as NATS goes away (before nats.js noticed) leaves nothing reconnecting: the process exits', async () => {
      // In a child process: what keeps a process alive is what this test is about. NATS goes away
      // (the proxy stops) in the same turn as close(): the drain starts over a connection that is
      // already dead, and nats.js's reconnect loop must not outlive the close.
      const nats = fileURLToPath(new globalThis.URL('../src/bus/nats.ts', import.meta.url));
      const testkit = import.meta.resolve('@rtm/testkit');
      const target = new globalThis.URL(URL);
      const script = `const { NatsBus } = await import(${JSON.stringify(nats)});
        const { startFaultyProxy } = await import(${JSON.stringify(testkit)});
        const proxy = await startFaultyProxy(${JSON.stringify(target.hostname)}, ${Number(target.port || 4222)});
        const bus = new NatsBus({ url: 'nats://127.0.0.1:' + proxy.port, subjectPrefix: ${JSON.stringify(freshPrefix())}, discoveryMs: 10 });
        await bus.start(() => {}, () => []);
        proxy.close();
        await bus.close();
        console.log('closed');`;
      const child = spawn(process.execPath, ['--conditions=rtm-source', '--import', 'tsx', '--input-type=module', '-e', script], {
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      let out = '';
      child.stdout.on('data', (d: Buffer) => (out += d.toString()));
      child.stderr.on('data', (d: Buffer) => (out += d.toString()));
      const exited = new Promise<number | null>((resolve) => child.once('exit', resolve));
      const closed = await until(() => out.includes('closed'), 15_000);
      assert.ok(closed, `close() returned: ${out}`);
      const t0 = Date.now();
      const code = await Promise.race([exited, sleep(5000).then(() => 'alive' as const)]);
      if (code === 'alive') child.kill('SIGKILL');
      assert.equal(code, 0, `the process still ran ${Date.now() - t0} ms after close() returned: ${out}`);
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

    it('events published while NATS is unreachable are sent on reconnect in publish order, before any later one; onReconnect hears of it', async () => {
      const proxy = await natsProxy();
      const subjectPrefix = freshPrefix();
      const reconnects: BusReconnect[] = [];
      const here: bigint[] = [];
      const there: bigint[] = [];
      const a = new NatsBus({ url: `nats://127.0.0.1:${proxy.port}`, subjectPrefix, discoveryMs: 10 });
      const b = new NatsBus({ url: URL, subjectPrefix, discoveryMs: 10 });
      const uidOf = (e: BusEvent): bigint => (e.type === 'kickout' ? e.uid : -1n);
      try {
        await a.start(
          (e) => void here.push(uidOf(e)),
          () => [],
          (info) => void reconnects.push(info),
        );
        await b.start(
          (e) => void there.push(uidOf(e)),
          () => [],
        );
        // A publisher that never stops, through the outage and the reconnect window.
        let seq = 0n;
        let publishing = true;
        const publisher = (async () => {
          while (publishing) {
            a.publish({ type: 'kickout', pid: 1, uid: seq++ });
            await sleep(1);
          }
        })();
        await until(() => there.length > 20);
        proxy.refuse = true;
        proxy.cut();
        await until(() => !a.connected, 5000);
        const atCut = seq;
        await sleep(300);
        const duringOutage = there.filter((u) => u >= atCut).length;
        const queued = a.queueStats.queuedEvents;
        assert.ok(queued > 0, 'events wait in the queue');
        proxy.refuse = false;
        await until(() => a.connected, 10_000);
        await sleep(200);
        publishing = false;
        await publisher;
        await until(() => there.length >= Number(seq) - 50, 5000); // the last ones may still be on their way
        await sleep(300);
        const all = Array.from({ length: Number(seq) }, (_, i) => BigInt(i));
        assert.deepEqual(here, all, 'every event handled here at once, in order');
        // The other node: every event in order; the only ones that may be missing are those written
        // to the socket in the instant before the cut was noticed (core NATS has no acks).
        const lost = all.filter((u) => !there.includes(u));
        assert.ok(
          lost.every((u) => u < atCut),
          `lost after the cut was noticed: ${lost.join(',')}`,
        );
        assert.deepEqual(
          there,
          all.filter((u) => !lost.includes(u)),
          'publish order kept across the outage',
        );
        assert.equal(duringOutage, 0, 'nothing crossed while cut off');
        assert.equal(reconnects.length, 1);
        assert.ok(reconnects[0]!.resent >= queued, `resent ${reconnects[0]!.resent} ≥ queued ${queued}`);
        assert.equal(reconnects[0]!.dropped, 0);
        assert.ok(reconnects[0]!.downMs >= 300);
        assert.equal(a.queueStats.queuedEvents, 0);
        assert.equal(a.queueStats.resentEvents, reconnects[0]!.resent);
      } finally {
        await Promise.all([a.close(), b.close()]);
        proxy.close();
      }
    });

    it('NATS restarts under every node: the first one back holds its queue until the other is back, which then gets every event once, in order', async () => {
      const { proxies, urls, subjectPrefix, spy, close } = await behindTwoProxies();
      const got: bigint[][] = [[], []];
      const reconnects: BusReconnect[][] = [[], []];
      const [a, b] = urls.map((url, i) => new NatsBus({ url, subjectPrefix, nodeId: `n${i}-${subjectPrefix}`, discoveryMs: 10 }));
      try {
        for (const [i, bus] of [a!, b!].entries())
          await bus.start(
            (e) => void got[i]!.push(uidOf(e)),
            () => [],
            (info) => void reconnects[i]!.push(info),
          );
        assert.ok(await until(() => a!.liveNodes.includes(b!.nodeId) && b!.liveNodes.includes(a!.nodeId)), 'the nodes know each other');
        // NATS restarts: every node loses it at once and cannot reconnect for a while.
        await restartUnder(proxies, [a!, b!]);
        spy.hellos.length = 0; // those of the start
        for (let i = 0n; i < 10n; i++) b!.publish(kickout(i));
        proxies[1]!.refuse = false; // node 1 is back first
        assert.ok(await until(() => spy.hellos.includes(b!.nodeId), 5000), 'node 1 is back on NATS (its hello)');
        for (let i = 10n; i < 20n; i++) b!.publish(kickout(i)); // while it holds: behind the queue
        await sleep(1000);
        assert.equal(b!.connected, false, 'node 1 holds its queue for node 0: not connected yet');
        assert.equal(b!.queueStats.queuedEvents, 20);
        assert.deepEqual(spy.events, [], 'nothing sent while node 0 is away');
        proxies[0]!.refuse = false; // node 0 is back a second later
        assert.ok(await until(() => got[0]!.length >= 20, 5000), `node 0 got ${got[0]!.length} of 20 events`);
        b!.publish(kickout(20n)); // after the hold: straight out, behind the queue
        assert.ok(await until(() => got[0]!.length >= 21, 5000));
        await sleep(300); // any duplicate would arrive by now
        const all = Array.from({ length: 21 }, (_, i) => BigInt(i));
        assert.deepEqual(got[0], all, 'every event once, in publish order');
        assert.deepEqual(spy.events, all, 'sent once each');
        assert.ok(a!.connected && b!.connected);
        assert.deepEqual(
          reconnects[1]!.map((r) => r.resent),
          [20],
          'onReconnect once the queue was sent',
        );
        assert.ok(reconnects[1]![0]!.downMs >= 1000, 'the outage lasts until the queue is sent');
        assert.deepEqual(
          reconnects[0]!.map((r) => r.resent),
          [0],
        );
      } finally {
        await close([a!, b!]);
      }
    });

    it('a peer known before the outage that never comes back holds the queue for three heartbeats, no longer', async () => {
      const { proxies, urls, subjectPrefix, spy, close } = await behindTwoProxies();
      const heartbeatMs = 300; // the hold's deadline: 900 ms
      const got: bigint[] = [];
      const reconnects: BusReconnect[] = [];
      const gone = new NatsBus({ url: urls[0]!, subjectPrefix, discoveryMs: 10, heartbeatMs });
      const back = new NatsBus({ url: urls[1]!, subjectPrefix, discoveryMs: 10, heartbeatMs });
      const stayed = new NatsBus({ url: URL, subjectPrefix, discoveryMs: 10, heartbeatMs }); // never lost NATS
      try {
        await gone.start(noop, () => []);
        await back.start(
          noop,
          () => [],
          (info) => void reconnects.push(info),
        );
        await stayed.start(
          (e) => void got.push(uidOf(e)),
          () => [],
        );
        assert.ok(await until(() => back.liveNodes.length === 2), 'node 1 knows both others');
        await restartUnder(proxies, [gone, back]);
        spy.hellos.length = 0; // those of the start
        for (let i = 0n; i < 5n; i++) back.publish(kickout(i));
        proxies[1]!.refuse = false; // node 0 stays away: it died meanwhile, as far as node 1 can tell
        assert.ok(await until(() => spy.hellos.includes(back.nodeId), 5000), 'node 1 is back on NATS');
        const t0 = Date.now();
        await sleep(400);
        assert.equal(back.connected, false, 'held: node 0 may still come back');
        assert.deepEqual(got, [], 'the node that stayed has nothing yet');
        assert.ok(await until(() => back.connected, 5000), 'the hold ended');
        const held = Date.now() - t0;
        assert.ok(held >= 800 && held < 2500, `held ${held} ms (deadline 900 ms)`);
        assert.ok(await until(() => got.length >= 5, 5000));
        await sleep(100);
        assert.deepEqual(got, [0n, 1n, 2n, 3n, 4n], 'the node that is there got the queue, in order');
        assert.deepEqual(
          reconnects.map((r) => r.resent),
          [5],
        );
      } finally {
        await close([gone, back, stayed]);
      }
    });

    it('a node stopped while its queue waits for a peer sends it to the nodes that are back', async () => {
      const { proxies, urls, subjectPrefix, spy, close } = await behindTwoProxies();
      const got: bigint[] = [];
      const errors: string[] = [];
      const away = new NatsBus({ url: urls[0]!, subjectPrefix, discoveryMs: 10 });
      const stopping = new NatsBus({
        url: urls[1]!,
        subjectPrefix,
        discoveryMs: 10,
        onError: (_e, context) => void errors.push(context),
      });
      const stayed = new NatsBus({ url: URL, subjectPrefix, discoveryMs: 10 });
      try {
        await away.start(noop, () => []);
        await stopping.start(noop, () => []);
        await stayed.start(
          (e) => void got.push(uidOf(e)),
          () => [],
        );
        assert.ok(await until(() => stopping.liveNodes.length === 2), 'node 1 knows both others');
        await restartUnder(proxies, [away, stopping]);
        spy.hellos.length = 0;
        for (let i = 0n; i < 3n; i++) stopping.publish(kickout(i));
        proxies[1]!.refuse = false;
        assert.ok(await until(() => spy.hellos.includes(stopping.nodeId), 5000), 'node 1 is back on NATS');
        await sleep(100);
        assert.equal(stopping.connected, false, 'held for node 0');
        await stopping.close();
        assert.ok(await until(() => got.length >= 3, 5000), `the node that stayed got ${got.length} of 3`);
        assert.deepEqual(got, [0n, 1n, 2n]);
        assert.ok(!errors.includes('close'), 'nothing reported lost');
      } finally {
        await close([away, stopping, stayed]);
      }
    });

    it('sent(mark): waits for NATS to have read what was published since mark; nothing to wait for otherwise', async () => {
      const proxy = await natsProxy();
      const subjectPrefix = freshPrefix();
      const a = new NatsBus({ url: `nats://127.0.0.1:${proxy.port}`, subjectPrefix, discoveryMs: 10, sentTimeoutMs: 300 });
      try {
        await a.start(noop, () => []);
        const m0 = a.sentMark();
        assert.equal(a.sent(m0), undefined, 'nothing published since the mark');
        proxy.requestDelayMs = 50;
        a.publish({ type: 'kickout', pid: 1, uid: 1n });
        const m1 = a.sentMark();
        a.publish({ type: 'kickout', pid: 1, uid: 2n });
        const first = a.sent(m0);
        assert.ok(first, 'two publications to wait for');
        assert.equal(a.sent(m1), first, 'one PING covers both');
        let t = performance.now();
        await first;
        assert.ok(performance.now() - t >= 45, `resolved after the slow link's round trip, not before (${performance.now() - t} ms)`);
        assert.equal(a.sent(m0), undefined, 'confirmed: nothing more to wait for');
        // A NATS that goes silent: the wait ends after sentTimeoutMs.
        proxy.holdRequests = true;
        a.publish({ type: 'kickout', pid: 1, uid: 3n });
        t = performance.now();
        await a.sent(m0);
        const waited = performance.now() - t;
        assert.ok(waited >= 280 && waited < 2000, `waited sentTimeoutMs (${waited} ms)`);
        // Cut off: the publications are queued, and there is nothing to wait for.
        proxy.holdRequests = false;
        proxy.refuse = true;
        proxy.cut();
        assert.ok(await until(() => !a.connected, 5000));
        const m2 = a.sentMark();
        a.publish({ type: 'kickout', pid: 1, uid: 4n });
        assert.equal(a.sent(m2), undefined, 'queued while cut off');
      } finally {
        proxy.refuse = false;
        await a.close();
        proxy.close();
      }
    });

    it('the outage queue keeps at most maxQueueBytes: later events of the outage are dropped, counted and reported once', async () => {
      const proxy = await natsProxy();
      const subjectPrefix = freshPrefix();
      const errors: string[] = [];
      const reconnects: BusReconnect[] = [];
      const there: bigint[] = [];
      const event = (uid: bigint): BusEvent => ({ type: 'kickout', pid: 1, uid });
      const size = `${subjectPrefix}.ev.1`.length + encodeMsgpack(event(0n)).byteLength; // every uid below fits one byte
      const a = new NatsBus({
        url: `nats://127.0.0.1:${proxy.port}`,
        subjectPrefix,
        discoveryMs: 10,
        maxQueueBytes: size * 10 + size - 1,
        onError: (_e, context) => void errors.push(context),
      });
      const b = new NatsBus({ url: URL, subjectPrefix, discoveryMs: 10 });
      try {
        await a.start(
          noop,
          () => [],
          (info) => void reconnects.push(info),
        );
        await b.start(
          (e) => void there.push(e.type === 'kickout' ? e.uid : -1n),
          () => [],
        );
        proxy.refuse = true;
        proxy.cut();
        await until(() => !a.connected, 5000);
        for (let i = 0; i < 30; i++) a.publish(event(BigInt(i)));
        assert.deepEqual(
          { ...a.queueStats },
          { queuedEvents: 10, queuedBytes: size * 10, droppedEvents: 20, resentEvents: 0, reconnects: 0 },
        );
        assert.deepEqual(
          errors.filter((c) => c === 'outage queue full'),
          ['outage queue full'],
          'reported once per outage',
        );
        proxy.refuse = false;
        await until(() => a.connected, 10_000);
        a.publish(event(100n));
        await until(() => there.length >= 11, 5000);
        await sleep(100);
        assert.deepEqual(
          there,
          [...Array.from({ length: 10 }, (_, i) => BigInt(i)), 100n],
          'the first ten, then what came after the reconnect',
        );
        assert.deepEqual(reconnects, [{ resent: 10, dropped: 20, downMs: reconnects[0]!.downMs }]);
        assert.equal(a.queueStats.droppedEvents, 20);
      } finally {
        await Promise.all([a.close(), b.close()]);
        proxy.close();
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

    it('the start line names the node, its subject prefix and the client gate it advertises: what to compare across nodes', async () => {
      const prefix = freshPrefix();
      const lines: string[] = [];
      const logger = createLogger('info', { write: (l: string) => lines.push(l) } as unknown as NodeJS.WritableStream);
      const server = await startTestServer({ bus: `${URL}?prefix=${prefix}`, clientEndpoint: 'rtm1.example:13321' }, { logger });
      try {
        const started = lines.map((l) => JSON.parse(l) as Record<string, unknown>).find((e) => e['msg'] === 'RTM server started');
        assert.ok(started, 'a start line');
        assert.equal(started['bus'], 'nats');
        assert.equal(started['busPrefix'], prefix);
        assert.equal(started['node'], server.services.bus.nodeId);
        assert.equal(started['clientEndpoint'], 'rtm1.example:13321');
      } finally {
        await server.close();
      }
    });

    it('rejects bad options', () => {
      assert.throws(() => new NatsBus({ url: 'http://x' }), /nats:\/\//);
      assert.throws(() => new NatsBus({ url: URL, subjectPrefix: 'a b' }), /subjectPrefix/);
      assert.throws(() => new NatsBus({ url: URL, subjectPrefix: 'a.>' }), /subjectPrefix/);
      assert.throws(() => new NatsBus({ url: URL, queryTimeoutMs: 0 }), /queryTimeoutMs/);
      assert.throws(() => new NatsBus({ url: URL, maxQueueBytes: -1 }), /maxQueueBytes/);
      assert.throws(() => new NatsBus({ url: URL, sentTimeoutMs: 0 }), /sentTimeoutMs/);
      assert.throws(() => new NatsBus({ url: URL, pingIntervalMs: 0 }), /pingIntervalMs/);
      assert.throws(() => new NatsBus({ url: URL, connectTimeoutMs: Number.NaN }), /connectTimeoutMs/);
    });
  });
});
