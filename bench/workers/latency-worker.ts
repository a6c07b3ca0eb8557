/**
 * Worker process of bench/latency.ts: logged-in sender and receiver clients of our server (both in
 * this process, one clock). Senders send `sendmsg` on the client gate at a steady rate with the
 * send time (performance.now()) as the body; receivers time each `pushmsg` against it.
 */
import { decodePayload } from '@rtm/fpnn';
import { fetchTokens, pool, rtmLogin, serveIpc, type FpnnWsClient } from './clients.js';

let senders: FpnnWsClient[] = [];
let receivers: FpnnWsClient[] = [];
let receiverUids: bigint[] = [];
let latencies: number[] = [];
let recordAfter = Infinity;
let received = 0;

async function connect(m: Record<string, unknown>): Promise<{ ms: number }> {
  const started = performance.now();
  const senderUids = (m.senders as string[]).map(BigInt);
  receiverUids = (m.receivers as string[]).map(BigInt);
  const all = [...senderUids, ...receiverUids];
  const tokens = await fetchTokens(m.serverEndpoint as string, all);
  const clients = await pool(all, 50, (uid, i) => rtmLogin(m.clientEndpoint as string, uid, tokens[i]!));
  senders = clients.slice(0, senderUids.length);
  receivers = clients.slice(senderUids.length);
  for (const r of receivers) {
    r.onPush = (frame) => {
      if (frame.method !== 'pushmsg') return;
      const now = performance.now();
      const { msg } = decodePayload(frame.flag, frame.payload);
      const sentAt = Number(typeof msg === 'string' ? msg : Buffer.from(msg as Uint8Array).toString());
      received++;
      if (sentAt >= recordAfter) latencies.push(now - sentAt);
    };
  }
  return { ms: Math.round(performance.now() - started) };
}

/** Sends `rate` messages/s for warm-up + measured seconds; latencies of messages sent after the warm-up are kept. */
async function run(m: Record<string, unknown>): Promise<Record<string, unknown>> {
  const rate = m.rate as number;
  const warmupMs = (m.warmupSeconds as number) * 1000;
  const totalMs = warmupMs + (m.seconds as number) * 1000;
  latencies = [];
  received = 0;
  let sent = 0;
  let errors = 0;
  let firstError: string | undefined;
  let mid = BigInt(Date.now()) * 1000n;
  const answerMs: number[] = [];
  const start = performance.now();
  recordAfter = start + warmupMs;
  await new Promise<void>((resolve) => {
    const tick = (): void => {
      const now = performance.now();
      const elapsed = now - start;
      const due = Math.floor((Math.min(elapsed, totalMs) * rate) / 1000);
      while (sent < due) {
        const i = sent % senders.length;
        const t0 = performance.now();
        sent++;
        senders[i]!.quest('sendmsg', { to: receiverUids[i]!, mid: mid++, mtype: 51, msg: String(t0), attrs: '' }).then(
          () => {
            if (t0 >= recordAfter) answerMs.push(performance.now() - t0);
          },
          (e: Error) => {
            errors++;
            firstError ??= e.message;
          },
        );
      }
      if (elapsed >= totalMs) resolve();
      else setTimeout(tick, 1);
    };
    tick();
  });
  // Let the last pushes arrive.
  const deadline = performance.now() + 3000;
  while (received + errors < sent && performance.now() < deadline) await new Promise((r) => setTimeout(r, 10));
  return { sent, received, errors, firstError, latencies, answerMs, seconds: (performance.now() - start) / 1000 };
}

serveIpc(
  {
    connect: (m) => connect(m),
    run: (m) => run(m),
    close: () => {
      for (const c of [...senders, ...receivers]) c.close();
      return {};
    },
  },
  () => {
    for (const c of [...senders, ...receivers]) c.close();
  },
);
