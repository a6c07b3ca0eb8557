/**
 * The write path of messages in SQLite: a group commit of many append batches in ONE transaction,
 * on one better-sqlite3 connection. It runs in the writer thread (`sqlite-writer.ts`) for file
 * databases and in the event loop for `:memory:` ones (a private in-memory database cannot be
 * shared with another thread).
 *
 * Ids and mtimes come from the newest message and the newest `seconds` row, read inside the
 * transaction: ids strictly increase in commit order (also across restarts and after deletions)
 * and mtime = max(clock, last mtime), so mtime never decreases with id.
 *
 * Every WAL frame a commit writes costs two `pwrite`s, and a commit of 3 P2P messages wrote 8.1 of
 * them: one for `p2p_pairs` and one for the time index (`seconds`, which holds the id counter),
 * rewritten at every commit. Both are now written at most once per second:
 * - a `seconds` row is written by the first commit of its second and completed by the first
 *   commit of a later one (`openSecond`), so every row but the newest is exact, and the newest may
 *   lag behind the newest message (readers treat it so: `SqliteStore.idBounds`);
 * - a `p2p_pairs` row's `last_id` is an id of the pair's newest second, not necessarily its
 *   newest id (`touchPair`).
 *
 * The counter (those two reads, 2.7 µs of a 33 µs single-message commit) is kept from one commit to
 * the next while `PRAGMA data_version` (0.2 µs) says no other connection has committed since: a
 * writer thread's appends and the event loop's retention sweep use two connections.
 */
import Database from 'better-sqlite3';
import { StrBytes } from '@rtm/fpnn/str-bytes';
import { conversationOfMessage, plainBytes, sameContent, type ConversationKey } from './conversation.js';
import { MessageKind, type NewMessage, type StoredMessage } from './store.js';

type Row = Record<string, unknown>;

export const MESSAGE_COLUMNS = 'id, pid, kind, from_id, to_id, mid, mtype, msg, str_bytes, attrs, mtime';

/**
 * What became of one message: stored with this id and mtime, a resend of the stored original, or
 * a mid collision (same key, other content). Compact on purpose: it crosses threads, and the
 * caller already holds the message itself.
 */
export type AppendOutcome = { id: bigint; mtime: bigint } | { duplicate: StoredMessage } | { collision: true } | { withheld: true };

/** What a probe write writes: about a P2P message's commit (≈ 20 KiB of pages). */
const PROBE_BYTES = 16 * 1024;

/** Outcomes of one batch, or why its transaction failed. */
export type BatchOutcome = AppendOutcome[] | { error: string };

export class AppendCommitter {
  private readonly s;
  /**
   * The counter as this connection's last commit left it, and the `data_version` it was read at;
   * undefined after anything else wrote through this committer or a commit failed.
   */
  private kept: { counter: Counter; dataVersion: bigint } | undefined;

  constructor(private readonly db: Database.Database) {
    const p = (sql: string): Database.Statement<unknown[], Row> => db.prepare<unknown[], Row>(sql);
    this.s = {
      begin: p('BEGIN IMMEDIATE'),
      savepoint: p('SAVEPOINT batch'),
      release: p('RELEASE batch'),
      rollbackBatch: p('ROLLBACK TO batch'),
      commit: p('COMMIT'),
      rollback: p('ROLLBACK'),
      // Moves when another connection has committed (never for this connection's own commits).
      dataVersion: db.prepare<[], bigint>('PRAGMA data_version').pluck(),
      // The newest row may lag behind the newest message (its second is still open) but holds
      // ids that retention removed (`closeNewestSecond`); the one before it is exact: the last id
      // before the newest second. Nothing deletes `seconds` rows.
      counterGet: db
        .prepare<[], [sec: bigint, lastId: bigint, lastMtime: bigint]>(
          'SELECT sec, last_id, last_mtime FROM seconds ORDER BY sec DESC LIMIT 2',
        )
        .raw(),
      newestMessage: db.prepare<[], [id: bigint, mtime: bigint]>('SELECT id, mtime FROM messages ORDER BY id DESC LIMIT 1').raw(),
      // The insert probes the unique key itself: no separate lookup for the common, new case.
      insert: p(
        `INSERT INTO messages (id, pid, kind, conv_lo, conv_hi, from_id, to_id, mid, mtype, msg, str_bytes, attrs, mtime) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
         ON CONFLICT (pid, kind, from_id, to_id, mid) DO NOTHING`,
      ),
      byKey: p(`SELECT ${MESSAGE_COLUMNS} FROM messages WHERE pid = ? AND kind = ? AND from_id = ? AND to_id = ? AND mid = ?`),
      // Left alone (no page written) when the row already holds an id of the commit's second
      // (>= the last parameter) and neither side is hidden. Readers lose nothing: unread asks for
      // pairs changed after an id bound that `seconds` gives per second, and the conversation
      // list orders by each pair's newest id in messages_history.
      touchPair: p(
        `INSERT INTO p2p_pairs (pid, lo, hi, last_id) VALUES (?, ?, ?, ?)
         ON CONFLICT (pid, lo, hi) DO UPDATE SET last_id = excluded.last_id, hidden_lo = 0, hidden_hi = 0
         WHERE p2p_pairs.last_id < ? OR p2p_pairs.hidden_lo <> 0 OR p2p_pairs.hidden_hi <> 0`,
      ),
      touchSecond: p(
        `INSERT INTO seconds (sec, last_id, last_mtime) VALUES (?, ?, ?)
         ON CONFLICT (sec) DO UPDATE SET last_id = excluded.last_id, last_mtime = excluded.last_mtime`,
      ),
      // The probe's row: removed again in its own transaction, so no reader ever sees it.
      probeInsert: db.prepare<[number]>('INSERT INTO kickouts (pid, uid, at, endpoint) VALUES (0, 0, 0, zeroblob(?))'),
      probeDelete: db.prepare<[bigint]>('DELETE FROM kickouts WHERE rowid = ?'),
      // Completes a lagging row (never lowers one).
      raiseSecond: p(
        `UPDATE seconds SET last_id = MAX(last_id, @lastId), last_mtime = MAX(last_mtime, @lastMtime)
         WHERE sec = @sec AND (last_id < @lastId OR last_mtime < @lastMtime)`,
      ),
    };
  }

  /**
   * Commits every batch in one transaction. Should that fail, it is rolled back and each batch is
   * retried in its own transaction, so one bad batch fails alone.
   */
  commitBatches(batches: readonly (readonly NewMessage[])[], clock: bigint): BatchOutcome[] {
    try {
      return this.commit(batches, clock);
    } catch (err) {
      if (batches.length === 1) return [{ error: errorText(err) }];
      return batches.map((b) => {
        try {
          return this.commit([b], clock)[0]!;
        } catch (e) {
          return { error: errorText(e) };
        }
      });
    }
  }

  /**
   * A write that stores nothing, committed as an append is: whether this connection can write now
   * (/healthz, while appends fail). It writes about what one message's commit does (a row with
   * overflow pages, PROBE_BYTES), so that a file that cannot grow or a disk without room fails it
   * as it fails appends; the row is deleted in the same transaction. Throws SQLite's error.
   */
  probe(): void {
    const s = this.s;
    s.begin.run();
    try {
      const { lastInsertRowid } = s.probeInsert.run(PROBE_BYTES);
      s.probeDelete.run(BigInt(lastInsertRowid));
      s.commit.run();
    } catch (err) {
      if (this.db.inTransaction) s.rollback.run();
      throw err;
    }
  }

  /**
   * Inserts already-unique messages without dedupe checks, in one transaction (bulk loads:
   * benchmarks, imports); p2p conversations are kept up as by appends. `mtime` per message may
   * back-date it; it is raised to keep mtime non-decreasing with id.
   */
  bulkInsert(messages: readonly (NewMessage & { mtime?: bigint })[], clock: bigint): void {
    const s = this.s;
    this.db
      .transaction(() => {
        // Its rows are written exact, so the newest row before them must be too.
        let { lastId, lastMtime } = this.closeNewestSecond();
        const pairs: PairTouches = new Map();
        // Back-dated mtimes may fall in any second: every pair row is rewritten (bound above all ids).
        const rewriteBelow = 2n ** 63n - 1n;
        for (const m of messages) {
          const wanted = m.mtime ?? clock;
          const mtime = wanted > lastMtime ? wanted : lastMtime;
          lastMtime = mtime;
          const c: ConversationKey = conversationOfMessage(m);
          insertRow(s.insert, ++lastId, m, c, mtime);
          s.touchSecond.run(mtime / 1000n, lastId, mtime);
          notePair(pairs, m, c, lastId);
        }
        this.touchPairs(pairs, rewriteBelow);
      })
      .immediate();
  }

  /** Rows holding an id below `rewriteBelow` (or a hidden side) get the pair's newest id. */
  private touchPairs(pairs: PairTouches, rewriteBelow: bigint): void {
    for (const [pid, lo, hi, id] of pairs.values()) this.s.touchPair.run(pid, lo, hi, id, rewriteBelow);
  }

  /**
   * The last id and mtime assigned (the newest message's, or the newest `seconds` row's should
   * retention have removed that message), the newest row's second `lastSec`, and the first id
   * of that second: ids from `lastSecondFrom` on all have mtimes in `lastSec`.
   */
  private counter(): Counter {
    const [newest, before] = this.s.counterGet.all();
    const message = this.s.newestMessage.get();
    let lastId = newest ? newest[1] : 0n;
    let lastMtime = newest ? newest[2] : 0n;
    if (message) {
      const [id, mtime] = message;
      if (id > lastId) lastId = id;
      if (mtime > lastMtime) lastMtime = mtime;
    }
    return {
      lastId,
      lastMtime,
      lastSec: newest ? newest[0] : -1n,
      lastSecondFrom: before ? before[1] + 1n : 1n,
    };
  }

  /** The counter inside the commit's transaction: the kept one if no other connection committed since. */
  private counterAt(dataVersion: bigint): Counter {
    const kept = this.kept;
    return kept && kept.dataVersion === dataVersion ? kept.counter : this.counter();
  }

  /**
   * Makes the newest `seconds` row exact (the newest message's id and mtime), inside the
   * caller's transaction, and returns the last id and mtime. Retention calls it before removing
   * messages, so that ids it removes from the open second are never given out again.
   */
  closeNewestSecond(): { lastId: bigint; lastMtime: bigint } {
    // The caller goes on to write in this transaction, on this connection (retention deletes, bulk
    // loads insert): data_version won't tell.
    this.kept = undefined;
    const counter = this.counter();
    this.completeNewestSecond(counter);
    return { lastId: counter.lastId, lastMtime: counter.lastMtime };
  }

  /**
   * A commit in a second after the newest row's: completes that row (the last commit of its
   * second may have left it behind) and opens one for the commit's second.
   */
  private openSecond(counter: Counter, sec: bigint, lastId: bigint, mtime: bigint): void {
    this.completeNewestSecond(counter);
    this.s.touchSecond.run(sec, lastId, mtime);
  }

  /** Raises the newest `seconds` row (if any) to the counter's last id and mtime; never lowers it. */
  private completeNewestSecond(counter: Counter): void {
    if (counter.lastSec >= 0n) this.s.raiseSecond.run({ lastId: counter.lastId, lastMtime: counter.lastMtime, sec: counter.lastSec });
  }

  private commit(batches: readonly (readonly NewMessage[])[], clock: bigint): AppendOutcome[][] {
    const s = this.s;
    s.begin.run();
    try {
      // Read under the write lock: no other connection can commit until ours ends.
      const dataVersion = s.dataVersion.get()!;
      const counter = this.counterAt(dataVersion);
      this.kept = undefined;
      let lastId = counter.lastId;
      const lastMtime = counter.lastMtime;
      const mtime = clock > lastMtime ? clock : lastMtime;
      const sec = mtime / 1000n;
      // The first id of this commit's second: pair rows at or above it are current enough.
      const secondFrom = sec === counter.lastSec ? counter.lastSecondFrom : lastId + 1n;
      const pairs: PairTouches = new Map();
      const outcomes = batches.map((batch) => {
        // A batch of several (sendmsgs) is all or nothing: a savepoint undoes it should one collide.
        const several = batch.length > 1;
        const batchFrom = lastId;
        const batchPairs: PairTouches = several ? new Map() : pairs;
        if (several) s.savepoint.run();
        const out = batch.map((m): AppendOutcome => {
          const id = lastId + 1n;
          const c = conversationOfMessage(m);
          const inserted = insertRow(s.insert, id, m, c, mtime);
          if (inserted === 0) {
            const original = rowToMessage(s.byKey.get(m.pid, m.kind, m.from, m.to, m.mid)!);
            return sameContent(original, m) ? { duplicate: original } : { collision: true };
          }
          lastId = id;
          notePair(batchPairs, m, c, id);
          return { id, mtime };
        });
        if (!several) return out;
        if (!out.some((o) => 'collision' in o)) {
          s.release.run();
          for (const [key, touch] of batchPairs) pairs.set(key, touch);
          return out;
        }
        s.rollbackBatch.run();
        s.release.run();
        lastId = batchFrom;
        // What this batch stored, and resends of it within the batch, are gone again.
        return out.map((o): AppendOutcome => ('id' in o || ('duplicate' in o && o.duplicate.id > batchFrom) ? { withheld: true } : o));
      });
      this.touchPairs(pairs, secondFrom);
      const stored = lastId !== counter.lastId;
      if (stored && sec !== counter.lastSec) this.openSecond(counter, sec, lastId, mtime);
      s.commit.run();
      this.kept = { counter: stored ? after(counter, lastId, mtime, sec) : counter, dataVersion };
      return outcomes;
    } catch (err) {
      if (this.db.inTransaction) s.rollback.run();
      throw err;
    }
  }
}

/** What `counter` reads at the start of a transaction. */
interface Counter {
  lastId: bigint;
  lastMtime: bigint;
  lastSec: bigint;
  lastSecondFrom: bigint;
}

/**
 * What `counter` would read after a commit that stored messages up to `lastId` at `mtime` (in
 * second `sec`), from the one before it: a new second's row made the newest row before it exact.
 */
function after(before: Counter, lastId: bigint, mtime: bigint, sec: bigint): Counter {
  if (sec === before.lastSec) return { ...before, lastId, lastMtime: mtime };
  return { lastId, lastMtime: mtime, lastSec: sec, lastSecondFrom: before.lastSec >= 0n ? before.lastId + 1n : 1n };
}

/**
 * p2p conversations (lists, unread) touched by a commit: one p2p_pairs row per pair, written at
 * most once per commit, with its newest id.
 */
type PairTouches = Map<string, [pid: number, lo: bigint, hi: bigint, lastId: bigint]>;

function notePair(pairs: PairTouches, m: NewMessage, c: ConversationKey, id: bigint): void {
  if (m.kind === MessageKind.P2P) pairs.set(`${m.pid}:${c.lo}:${c.hi}`, [m.pid, c.lo, c.hi, id]);
}

function bodyParam(msg: string | Uint8Array): string | Buffer {
  return typeof msg === 'string' ? msg : Buffer.from(msg.buffer, msg.byteOffset, msg.byteLength);
}

/** Inserts one message (its key may be taken: none is then, and 0 says so), as MESSAGE_COLUMNS lays it out. */
function insertRow(insert: Database.Statement<unknown[], Row>, id: bigint, m: NewMessage, c: ConversationKey, mtime: bigint): number {
  return insert.run(id, m.pid, m.kind, c.lo, c.hi, m.from, m.to, m.mid, m.mtype, bodyParam(m.msg), strBytesParam(m.msg), m.attrs, mtime)
    .changes;
}

/** `str_bytes`: 1 for a str body whose bytes are not UTF-8 (a StrBytes), kept as a BLOB. */
function strBytesParam(msg: string | Uint8Array): number {
  return msg instanceof StrBytes ? 1 : 0;
}

export function rowToMessage(r: Row): StoredMessage {
  const msg = r['msg'];
  return {
    id: r['id'] as bigint,
    pid: Number(r['pid']),
    kind: Number(r['kind']) as StoredMessage['kind'],
    from: r['from_id'] as bigint,
    to: r['to_id'] as bigint,
    mid: r['mid'] as bigint,
    mtype: Number(r['mtype']),
    msg: typeof msg === 'string' ? msg : r['str_bytes'] === 1n ? StrBytes.view(msg as Uint8Array) : plainBytes(msg as Uint8Array),
    attrs: r['attrs'] as string,
    mtime: r['mtime'] as bigint,
  };
}

function errorText(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
