/**
 * Worker process of bench/latency.ts: logged-in sender and receiver clients (both in this process,
 * one clock). Senders send at a steady rate with the send time as the body (ms since the epoch, so
 * that the server's send trace can be joined to it: send-trace.ts); receivers time each push
 * against it.
 *
 * Our server (`kind: 'rtm'`): `sendmsg` on the client gate, timed at `pushmsg`; the answer (mtime,
 * after persistence) is timed too. The protocol floor (`kind: 'fpnn'`, bench/baselines/fpnn-relay.ts):
 * the same clients and quests, logged in with any token. The relay floor (`kind: 'ws'`,
 * bench/baselines/ws-server.ts): a JSON text message {to, t} relayed to the receiver's connection,
 * nothing stored or answered.
 */
import { decodePayload } from '@rtm/fpnn';
import type WebSocket from 'ws';
import { fetchTokens, pool, rtmLogin, serveIpc, wsConnect, type FpnnWsClient } from './clients.js';

/** Sends message `n` from sender `i` to its receiver (`sentAtMs`: its body); resolves when answered (our server) or at once. */
type Send = (i: number, n: bigint, sentAtMs: number) => Promise<unknown> | undefined;

let send: Send = () => undefined;
let senderCount = 0;
let closeAll: () => void = () => undefined;
let latencies: number[] = [];
/** Send time of each timed message (ms since the epoch, so that workers compare), as `latencies`. */
let sentAtMs: number[] = [];
/** The end of the warm-up, in ms since the epoch. */
let recordAfterMs = Infinity;
let received = 0;

const epochMs = (): number => performance.timeOrigin + performance.now();

function onReceived(sent: number): void {
  const now = epochMs();
  received++;
  if (sent >= recordAfterMs) {
    latencies.push(now - sent);
    sentAtMs.push(sent);
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
    send = (i, _n, sent) => void senders[i]!.send(JSON.stringify({ to: receiverUids[i], t: sent }));
    closeAll = () => [...senders, ...receivers].forEach((w: WebSocket) => w.terminate());
  } else {
    const all = [...senderUids, ...receiverUids].map(BigInt);
    const tokens = m.kind === 'rtm' ? await fetchTokens(m.serverEndpoint as string, all) : all.map(() => 'any');
    const clients = await pool(all, 50, (uid, i) => rtmLogin(endpoint, uid, tokens[i]!, true, m.tlsCa as string | undefined));
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
    send = (i, mid, sent) => senders[i]!.quest('sendmsg', { to: to[i]!, mid, mtype: 51, msg: String(sent), attrs: '' });
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
  const recordAfter = start + warmupMs;
  recordAfterMs = performance.timeOrigin + recordAfter;
  await new Promise<void>((resolve) => {
    const tick = (): void => {
      const now = performance.now();
      const elapsed = now - start;
      const due = Math.floor((Math.min(elapsed, totalMs) * rate) / 1000);
      while (sent < due) {
        const i = sent % senderCount;
        const t0 = performance.now();
        sent++;
        send(i, mid++, performance.timeOrigin + t0)?.then(
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
