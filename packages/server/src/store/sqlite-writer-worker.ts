/**
 * Entry of the SQLite writer thread (see sqlite-writer.ts). It owns a connection of its own and
 * commits append requests: everything queued while it was busy goes into ONE transaction, so the
 * group grows by itself when commits are slow (a disk stall) and stays small when they are fast.
 */
import { parentPort, receiveMessageOnPort, workerData } from 'node:worker_threads';
import { AppendCommitter, type BatchOutcome } from './sqlite-appender.js';
import { openConnection } from './sqlite-connection.js';
import { carriedOutcome, landed, WRITER_READY, type WriterOptions, type WriterReply, type WriterRequest } from './sqlite-writer.js';

const options = workerData as WriterOptions & { path: string };
const port = parentPort!;
const db = openConnection(options.path, options);
// Auto-checkpoints run inside the commit of the connection that writes: this one. With the
// checkpointer thread on, they are only a backstop (40 MiB of WAL).
db.pragma(`wal_autocheckpoint = ${options.walAutocheckpointPages}`);
const committer = new AppendCommitter(db);
// Until this arrives the thread has not started: should it die first, the next is started with back-off.
port.postMessage(WRITER_READY);

port.on('message', (first: WriterRequest | 'stop') => {
  const requests: WriterRequest[] = [];
  let stop = first === 'stop';
  const probes: WriterRequest[] = [];
  const take = (r: WriterRequest): number => (r.probe ? probes : requests).push(r);
  if (first !== 'stop') take(first);
  // Drain what queued up behind the first request: one transaction for all of it.
  for (let next = receiveMessageOnPort(port); next; next = receiveMessageOnPort(port)) {
    if (next.message === 'stop') stop = true;
    else take(next.message as WriterRequest);
  }
  if (requests.length > 0) {
    const batches = requests.flatMap((r) => r.batches.map((b) => b.map(landed)));
    const clock = requests.reduce((max, r) => (r.clock > max ? r.clock : max), 0n);
    const outcomes: BatchOutcome[] = committer.commitBatches(batches, clock).map(carriedOutcome);
    let at = 0;
    for (const r of requests) {
      const reply: WriterReply = { seq: r.seq, outcomes: outcomes.slice(at, at + r.batches.length) };
      at += r.batches.length;
      port.postMessage(reply);
    }
  }
  // After the appends: a probe tells whether this connection can write now.
  for (const r of probes) {
    let outcomes: BatchOutcome[] = [];
    try {
      committer.probe();
    } catch (err) {
      outcomes = [{ error: err instanceof Error ? err.message : String(err) }];
    }
    port.postMessage({ seq: r.seq, outcomes } satisfies WriterReply);
  }
  if (stop) {
    db.close();
    port.close();
  }
});
