/**
 * Worker process of bench/latency.ts: logged-in sender and receiver clients (both in this process,
 * one clock). Senders send at a steady rate with the send time (performance.now()) as the body;
 * receivers time each push against it.
 *
 * Our server (`kind: 'rtm'`): `sendmsg` on the client gate, timed at `pushmsg`; the answer (mtime,
 * after persistence) is timed too. The relay floor (`kind: 'ws'`, bench/baselines/ws-server.ts):
 * a JSON text message {to, t} relayed to the receiver's connection, nothing stored or answered.
 */
import { decodePayload } from '@rtm/fpnn';
import type WebSocket from 'ws';
import { fetchTokens, pool, rtmLogin, serveIpc, wsConnect, type FpnnWsClient } from './clients.js';

/** Sends message `n` from sender `i` to its receiver; resolves when answered (our server) or at once. */
type Send = (i: number, n: bigint, sentAt: number) => Promise<unknown> | undefined;

let send: Send = () => undefined;
let senderCount = 0;
let closeAll: () => void = () => undefined;
let latencies: number[] = [];
/** Send time of each timed message (ms since the epoch, so that workers compare), as `latencies`. */
let sentAtMs: number[] = [];
let recordAfter = Infinity;
let received = 0;

function onReceived(sentAt: number): void {
  const now = performance.now();
  received++;
  if (sentAt >= recordAfter) {
    latencies.push(now - sentAt);
    sentAtMs.push(performance.timeOrigin + sentAt);
  }
}

async function connect(m: Record<string, unknown>): Promise<{ ms: number }> {
  const started = performance.now();
  const senderUids = m.senders as string[];
  const receiverUids = m.receivers as string[];
  const endpoint = m.clientEndpoint as string;
  senderCount = senderUids.length;
  if (m.kind === 'ws') {
    const receivers = await pool(receiverUids, 50, (uid) => wsConnect(endpoint, [], uid));
    const senders = await pool(senderUids, 50, (uid) => wsConnect(endpoint, [], uid));
    for (const r of receivers) r.on('message', (data: Buffer) => onReceived((JSON.parse(data.toString()) as { t: number }).t));
    send = (i, _n, sentAt) => void senders[i]!.send(JSON.stringify({ to: receiverUids[i], t: sentAt }));
    closeAll = () => [...senders, ...receivers].forEach((w: WebSocket) => w.terminate());
  } else {
    const all = [...senderUids, ...receiverUids].map(BigInt);
    const tokens = await fetchTokens(m.serverEndpoint as string, all);
    const clients = await pool(all, 50, (uid, i) => rtmLogin(endpoint, uid, tokens[i]!));
    const senders = clients.slice(0, senderUids.length);
    const receivers: FpnnWsClient[] = clients.slice(senderUids.length);
    const to = receiverUids.map(BigInt);
    for (const r of receivers) {
      r.onPush = (frame) => {
        if (frame.method !== 'pushmsg') return;
        const { msg } = decodePayload(frame.flag, frame.payload);
        onReceived(Number(typeof msg === 'string' ? msg : Buffer.from(msg as Uint8Array).toString()));
      };
    }
    send = (i, mid, sentAt) => senders[i]!.quest('sendmsg', { to: to[i]!, mid, mtype: 51, msg: String(sentAt), attrs: '' });
    closeAll = () => clients.forEach((c) => c.close());
  }
  return { ms: Math.round(performance.now() - started) };
}

/** Sends `rate` messages/s for warm-up + measured seconds; latencies of messages sent after the warm-up are kept. */
async function run(m: Record<string, unknown>): Promise<Record<string, unknown>> {
  const rate = m.rate as number;
  const warmupMs = (m.warmupSeconds as number) * 1000;
  const totalMs = warmupMs + (m.seconds as number) * 1000;
  latencies = [];
  sentAtMs = [];
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
        const i = sent % senderCount;
        const t0 = performance.now();
        sent++;
        send(i, mid++, t0)?.then(
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
  return { sent, received, errors, firstError, latencies, sentAtMs, answerMs, seconds: (performance.now() - start) / 1000 };
}

serveIpc(
  {
    connect: (m) => connect(m),
    run: (m) => run(m),
    close: () => {
      closeAll();
      return {};
    },
  },
  () => closeAll(),
);
