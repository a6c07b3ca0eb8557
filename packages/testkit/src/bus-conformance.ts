/**
 * The executable contract of `Bus` (packages/server/src/bus/bus.ts): one suite, run against every
 * implementation (STYLE.md guideline 6).
 *
 *   busConformance('local', async () => ({ buses: [new LocalBus()], cleanup: async () => {} }));
 *   busConformance('nats', async () => ({ buses: [a, b, c], cleanup }));   // three nodes
 *
 * The factory returns fresh buses, not yet started, that form ONE cluster (one node each); the
 * suite starts them with its own handler and responder, closes them after each test (closing twice
 * is allowed), then calls `cleanup()`. Tests that need several nodes are skipped for one bus.
 */
import assert from 'node:assert/strict';
import { afterEach, beforeEach, describe, it } from 'node:test';
import { StrBytes } from '@rtm/fpnn';
import type { Bus, BusEvent } from '../../server/src/bus/bus.js';

export interface BusUnderTest {
  /** One bus per node of one cluster, not started. */
  buses: Bus[];
  cleanup(): Promise<void>;
}

const P2P = 1 as const; // MessageKind.P2P; a type-only import keeps testkit free of the server at run time
const BIG = 2n ** 53n;

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

async function until(what: string, cond: () => boolean, timeoutMs = 5000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(5);
  }
}

function message(pid: number, seq: number, over: { from?: bigint; to?: bigint; msg?: string | Uint8Array } = {}): BusEvent {
  return {
    type: 'message',
    message: {
      pid,
      kind: P2P,
      from: over.from ?? 1n,
      to: over.to ?? 2n,
      mid: BigInt(seq),
      mtype: 30,
      msg: over.msg ?? `m${seq}`,
      attrs: '',
      id: BigInt(seq + 1),
      mtime: 1_700_000_000_000n + BigInt(seq),
    },
    recipients: [over.to ?? 2n],
  };
}

/** The sequence number an ordering-test event carries, whatever its type. */
function seqOf(e: BusEvent): number {
  switch (e.type) {
    case 'message':
      return Number(e.message.mid);
    case 'kickout':
    case 'room':
    case 'presence':
      return Number(e.uid);
    case 'group':
      return Number(e.gid);
  }
}

function pidOf(e: BusEvent): number {
  return e.type === 'message' ? e.message.pid : e.pid;
}

/** An event of every type in turn, so the order is checked across types too. */
function mixed(pid: number, seq: number): BusEvent {
  switch (seq % 5) {
    case 0:
      return message(pid, seq);
    case 1:
      return { type: 'kickout', pid, uid: BigInt(seq) };
    case 2:
      return { type: 'room', pid, rid: BIG + 7n, uid: BigInt(seq), joined: seq % 8 === 2, kick: false };
    case 3:
      return { type: 'group', pid, gid: BigInt(seq) };
    default:
      return { type: 'presence', pid, uid: BigInt(seq), event: 'login', time: 1_700_000_000, endpoint: '127.0.0.1:13321' };
  }
}

const sorted = <T extends bigint | string>(values: T[]): T[] => [...values].sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));

export function busConformance(name: string, factory: () => Promise<BusUnderTest>): void {
  describe(`Bus conformance: ${name}`, () => {
    let cluster: BusUnderTest;
    let buses: Bus[];
    /** Events handled by node i, in handling order. */
    let received: BusEvent[][];
    /** What node i's responder says is online there, per pid. */
    let online: Map<number, Set<bigint>>[];
    let responderCalls: number[];

    const startAll = async (): Promise<void> => {
      await Promise.all(
        buses.map((bus, i) =>
          bus.start(
            (event) => void received[i]!.push(event),
            (pid, uids) => {
              responderCalls[i]!++;
              const here = online[i]!.get(pid);
              return here ? uids.filter((u) => here.has(u)) : [];
            },
          ),
        ),
      );
    };

    beforeEach(async () => {
      cluster = await factory();
      buses = cluster.buses;
      assert.ok(buses.length >= 1, 'the factory returns at least one bus');
      received = buses.map(() => []);
      online = buses.map(() => new Map());
      responderCalls = buses.map(() => 0);
      await startAll();
    });

    afterEach(async () => {
      await Promise.all(buses.map((b) => b.close()));
      await cluster.cleanup();
    });

    it('every node has its own nodeId', () => {
      assert.equal(new Set(buses.map((b) => b.nodeId)).size, buses.length);
      for (const b of buses) assert.ok(typeof b.nodeId === 'string' && b.nodeId.length > 0);
    });

    it('publish reaches every node, the publisher included, exactly once', async () => {
      buses.forEach((bus, i) => bus.publish({ type: 'kickout', pid: 100 + i, uid: BigInt(i) }));
      await until('every event on every node', () => received.every((r) => r.length >= buses.length));
      await sleep(150); // any duplicate would arrive by now
      for (const [node, events] of received.entries()) {
        assert.equal(events.length, buses.length, `node ${node} handled ${events.length} events`);
        assert.deepEqual(
          events.map(pidOf).sort(),
          buses.map((_, i) => 100 + i),
          `node ${node} got each publisher's event once`,
        );
      }
    });

    it('the publisher handles its own event before publish returns, as LocalBus does', () => {
      buses[0]!.publish({ type: 'kickout', pid: 1, uid: 1n });
      assert.equal(received[0]!.length, 1);
    });

    it('keeps each publisher’s order across event types under a burst of 1,000 events per node', async () => {
      const N = 1000;
      // Interleave the publishers the way concurrent requests would.
      for (let seq = 0; seq < N; seq++) buses.forEach((bus, i) => bus.publish(mixed(200 + i, seq)));
      await until('every burst on every node', () => received.every((r) => r.length >= N * buses.length), 15_000);
      await sleep(100);
      for (const [node, events] of received.entries()) {
        assert.equal(events.length, N * buses.length, `node ${node}: no duplicate, none lost`);
        const bySender = new Map<number, number[]>();
        for (const e of events) {
          const list = bySender.get(pidOf(e)) ?? [];
          list.push(seqOf(e));
          bySender.set(pidOf(e), list);
        }
        for (const [pid, seqs] of bySender) {
          assert.deepEqual(
            seqs,
            Array.from({ length: N }, (_, k) => k),
            `node ${node}, publisher ${pid - 200}: publish order`,
          );
        }
      }
    });

    it('bigint ids above 2^53, string and binary bodies and every event shape survive', async () => {
      const events: BusEvent[] = [
        {
          type: 'message',
          message: {
            pid: 0x7fffffff,
            kind: P2P,
            from: BIG + 1n,
            to: 2n ** 63n - 1n,
            mid: 0x0123456789abcdefn,
            mtype: 51,
            msg: new Uint8Array([0, 1, 2, 255]),
            attrs: '{"k":"✓"}',
            id: BIG + 3n,
            mtime: 1_700_000_000_123n,
          },
          recipients: [BIG + 5n, 2n ** 63n - 2n, 0n],
          origin: { node: buses[0]!.nodeId, conn: 42 },
        },
        message(300, 9, { from: BIG * 3n, to: 1n, msg: 'chat ✓' }),
        // A str whose bytes are not UTF-8 (the Go SDK's binary sends): a str of those bytes still.
        message(300, 10, { from: BIG * 3n, to: 1n, msg: StrBytes.view(new Uint8Array([0xff, 0x00, 0xc3, 0x28])) }),
        { type: 'kickout', pid: 300, uid: BIG + 11n },
        { type: 'kickout', pid: 300, uid: BIG + 11n, endpoint: '10.0.0.1:13321', except: { node: buses[0]!.nodeId, conn: 7 } },
        { type: 'room', pid: 300, rid: BIG + 12n, uid: BIG + 13n, joined: false, kick: true },
        { type: 'presence', pid: 300, uid: BIG + 14n, event: 'logout', time: 1_700_000_001, endpoint: '10.0.0.1:13321' },
      ];
      const publisher = buses.length - 1;
      for (const e of events) buses[publisher]!.publish(e);
      await until('the events on every node', () => received.every((r) => r.length >= events.length));
      for (const [node, got] of received.entries()) {
        assert.deepEqual(got, events, `node ${node}`);
        const body = (got[0] as Extract<BusEvent, { type: 'message' }>).message.msg;
        assert.ok(body instanceof Uint8Array, 'binary body stays bytes');
        assert.equal(typeof (got[1] as Extract<BusEvent, { type: 'message' }>).message.msg, 'string', 'string body stays a string');
        const strBytes = (got[2] as Extract<BusEvent, { type: 'message' }>).message.msg;
        assert.ok(strBytes instanceof StrBytes, 'a StrBytes body stays a StrBytes');
        assert.deepEqual([...strBytes], [0xff, 0x00, 0xc3, 0x28]);
      }
    });

    it('queryOnline answers the union of every node’s local answer', async () => {
      const pid = 400;
      buses.forEach((_, i) => online[i]!.set(pid, new Set([BIG + BigInt(i), 10n + BigInt(i)])));
      online[0]!.get(pid)!.add(BIG + 1n); // online on two nodes: reported once
      online[0]!.set(401, new Set([BIG + 99n])); // another project: never reported for pid 400
      const asked = [...buses.map((_, i) => BIG + BigInt(i)), ...buses.map((_, i) => 10n + BigInt(i)), BIG + 99n, 77n];
      const expected = sorted([...buses.map((_, i) => BIG + BigInt(i)), ...buses.map((_, i) => 10n + BigInt(i))]);
      for (const bus of buses) {
        const answer = await bus.queryOnline(pid, asked);
        assert.deepEqual(sorted(answer), expected, `asked from ${bus.nodeId}`);
        assert.equal(new Set(answer).size, answer.length, 'no uid twice');
      }
      assert.deepEqual(await buses[0]!.queryOnline(pid, []), []);
      assert.deepEqual(await buses[0]!.queryOnline(pid, [123n]), []);
    });

    it('askOnline answers the same, and which nodes answered: all of them', async () => {
      const pid = 410;
      buses.forEach((_, i) => online[i]!.set(pid, new Set([BIG + BigInt(i)])));
      const asked = [...buses.map((_, i) => BIG + BigInt(i)), 77n];
      const nodes = sorted(buses.map((b) => b.nodeId));
      for (const bus of buses) {
        const answer = await bus.askOnline(pid, asked);
        assert.deepEqual(sorted(answer.online), sorted(asked.slice(0, buses.length)), `asked from ${bus.nodeId}`);
        assert.deepEqual(sorted([...answer.answered]), nodes, `answered, asked from ${bus.nodeId}`);
      }
    });

    it('queryOnline survives a node that closed: the others still answer, promptly', async (t) => {
      if (buses.length < 2) return t.skip('needs several nodes');
      const pid = 500;
      buses.forEach((_, i) => online[i]!.set(pid, new Set([BIG + BigInt(i)])));
      const asked = buses.map((_, i) => BIG + BigInt(i));
      const gone = buses.length - 1;
      await buses[gone]!.close();
      const t0 = Date.now();
      const answer = await buses[0]!.askOnline(pid, asked);
      const elapsed = Date.now() - t0;
      assert.deepEqual(sorted(answer.online), asked.slice(0, gone));
      assert.ok(!answer.answered.has(buses[gone]!.nodeId), 'the closed node did not answer');
      assert.ok(elapsed < 2000, `answered in ${elapsed} ms`);
      // Events still flow between the nodes that remain, and the closed one gets nothing.
      const before = received[gone]!.length;
      buses[0]!.publish({ type: 'kickout', pid, uid: 1n });
      await until('the event on the remaining nodes', () => received.slice(0, gone).every((r) => r.some((e) => pidOf(e) === pid)));
      await sleep(50);
      assert.equal(received[gone]!.length, before, 'a closed bus handles nothing');
    });

    it('publish and queryOnline after close neither throw nor hang', async () => {
      const bus = buses[0]!;
      await bus.close();
      await bus.close();
      bus.publish({ type: 'kickout', pid: 1, uid: 1n });
      assert.equal(received[0]!.length, 0);
      let timer: NodeJS.Timeout | undefined;
      const hung = new Promise<'hung'>((resolve) => (timer = setTimeout(() => resolve('hung'), 2000)));
      const answer = await Promise.race([bus.queryOnline(1, [1n]), hung]);
      clearTimeout(timer); // else the test file's process waits it out
      assert.notEqual(answer, 'hung');
    });
  });
}
