/**
 * What the order across nodes costs (docs/cluster.md "Order across nodes"): a node answers a call
 * that published events once NATS has read them (bus.ts `sent`). Two in-process nodes on
 * PostgreSQL + NATS in one process; the order is switched on and off between rounds (each setting
 * first every other round, and sending from both nodes, which differ), so both see the same machine.
 *
 *   node --conditions=rtm-source --import tsx bench/answer-order.ts [--samples 1000] [--pipelined 4000] [--rounds 3]
 *
 * sequential: a backend sends `sendmsg` through its node, one at a time, to a user on the other
 *   node; figures: the answer time, and the time to the receiver's push.
 * pipelined: `pipelined` sends with 64 in flight; figure: answers per second.
 * Also: how long the answers waited for NATS (`sent`); the nodes share one event loop, so
 *   the wait includes the other node's work of that moment (separate processes wait less).
 *
 * Needs RTM_TEST_POSTGRES_URL / RTM_TEST_NATS_URL (defaults: local services); skips with a message
 * when either is unreachable.
 */
import { parseArgs } from 'node:util';
import type { RawClient } from '@rtm/testkit';
import type { NatsBus } from '../packages/server/src/bus/nats.js';
import { clusterServicesUnavailable } from '../test/cluster/cluster.js';
import { nextId, startInProcessNodes } from '../test/cluster/in-process-nodes.js';
import { median, percentile } from './workers/lib.js';

const { values } = parseArgs({
  options: {
    samples: { type: 'string', default: '1000' },
    pipelined: { type: 'string', default: '4000' },
    rounds: { type: 'string', default: '3' },
  },
});
const SAMPLES = Number(values.samples);
const PIPELINED = Number(values.pipelined);
const ROUNDS = Number(values.rounds);
const IN_FLIGHT = 64;

const unavailable = await clusterServicesUnavailable();
if (unavailable) {
  console.log(`skipped: ${unavailable}`);
  process.exit(0);
}

/** Whether answers wait for NATS now (bus.ts `sent`); both nodes, switched between rounds. */
let ordering = true;
/** How long answers waited for NATS, ms. */
const waits: number[] = [];
const switchable = (_i: number, bus: NatsBus): NatsBus => {
  const sent = bus.sent.bind(bus);
  bus.sent = (mark: number) => {
    if (!ordering) return undefined;
    const t = performance.now();
    const p = sent(mark);
    void p?.then(() => waits.push(performance.now() - t));
    return p;
  };
  return bus;
};
const c = await startInProcessNodes(2, { adaptBus: switchable, settings: { serverCallsPerSecond: 0 } });

const send = (from: number, to: bigint, mid: bigint) =>
  c.call(from, 'sendmsg', { from: to + 1n, to, mid, mtype: 51, msg: 'bench', attrs: '' });

/**
 * Resolves with the time `client` got the push of `mid` (RawClient records pushes in an array):
 * taken when it arrives, which may be before the send's answer.
 */
function pushWaiter(client: RawClient): (mid: bigint) => Promise<number> {
  const waiting = new Map<bigint, (at: number) => void>();
  client.pushes.push = (...items) => {
    for (const p of items) waiting.get(p.payload['mid'] as bigint)?.(performance.now());
    return 0;
  };
  return (mid) => new Promise<number>((resolve) => waiting.set(mid, resolve));
}

interface Round {
  answerMs: number[];
  pushMs: number[];
  answersPerSecond: number;
}

async function round(from: number): Promise<Round> {
  const R = nextId();
  const receiver = await c.login(1 - from, R);
  const pushed = pushWaiter(receiver);
  const answerMs: number[] = [];
  const pushMs: number[] = [];
  for (let i = 0; i < SAMPLES + 100; i++) {
    const mid = nextId();
    const arrived = pushed(mid);
    const t0 = performance.now();
    await send(from, R, mid);
    const t1 = performance.now();
    const t2 = await arrived;
    if (i >= 100) {
      answerMs.push(t1 - t0);
      pushMs.push(t2 - t0);
    }
  }
  let next = 0;
  const t0 = performance.now();
  await Promise.all(
    Array.from({ length: IN_FLIGHT }, async () => {
      while (next++ < PIPELINED) await send(from, R, nextId());
    }),
  );
  const answersPerSecond = PIPELINED / ((performance.now() - t0) / 1000);
  receiver.close();
  return { answerMs, pushMs, answersPerSecond };
}

const results: Record<'ordered' | 'unordered', Round[]> = { ordered: [], unordered: [] };
try {
  for (let r = 0; r < ROUNDS; r++) {
    // Each setting sends from both nodes (they differ), and goes first every other round.
    for (const on of r % 2 === 0 ? [true, false] : [false, true]) {
      ordering = on;
      for (const from of [0, 1]) results[on ? 'ordered' : 'unordered'].push(await round(from));
    }
  }
} finally {
  await c.close();
}

const fig = (rounds: Round[]) => {
  const answers = rounds.flatMap((r) => r.answerMs).sort((a, b) => a - b);
  const pushes = rounds.flatMap((r) => r.pushMs).sort((a, b) => a - b);
  return {
    answerP50: percentile(answers, 50),
    answerP99: percentile(answers, 99),
    pushP50: percentile(pushes, 50),
    pushP99: percentile(pushes, 99),
    answersPerSecond: median(rounds.map((r) => r.answersPerSecond)),
  };
};
waits.sort((a, b) => a - b);
const o = fig(results.ordered);
const u = fig(results.unordered);
const ms = (x: number) => `${x.toFixed(3)} ms`;
console.log(
  `p2p sends from one node to a user on the other, ${ROUNDS} rounds × ${SAMPLES} sequential + ${PIPELINED} pipelined (${IN_FLIGHT} in flight)\n`,
);
console.log('| figure | ordered | unordered | ordered ÷ unordered |');
console.log('|---|---|---|---|');
for (const [name, a, b, f] of [
  ['answer p50', o.answerP50, u.answerP50, ms],
  ['answer p99', o.answerP99, u.answerP99, ms],
  ['push p50', o.pushP50, u.pushP50, ms],
  ['push p99', o.pushP99, u.pushP99, ms],
  ['pipelined answers/s', o.answersPerSecond, u.answersPerSecond, (x: number) => x.toFixed(0)],
] as const) {
  console.log(`| ${name} | ${f(a)} | ${f(b)} | ${(a / b).toFixed(2)} |`);
}
console.log(
  `\nanswers' waits for NATS (sent), ${waits.length} of them: p50 ${ms(percentile(waits, 50))}, p99 ${ms(percentile(waits, 99))}`,
);
