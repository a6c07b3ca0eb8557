import type { Logger } from '../observability/logger.js';
import type { NodePresence, Store } from '../store/store.js';

/**
 * This node's records, in the store, of the presences it holds (services/sessions.ts): what another
 * node, or the next process, reads if this one dies without a stop, and how the nodes of a cluster
 * tell where a presence goes on.
 *
 * The changes of an event-loop turn (a burst of logins) are written together, the last one per
 * user, after the write under way: one write after another, so a later change is never overtaken
 * by an earlier one (two queries on a pool may run in either order). A failed write is logged
 * once and leaves `lost` set: the owner records everything again (`replaceAll`) when it can. The
 * records matter only if this node dies, so nothing waits for them.
 */
export class PresenceRecords {
  private readonly changes = new Map<string, NodePresence>();
  private written: Promise<void> = Promise.resolve();
  private scheduled = false;
  /** The next write is all of them: the node's other records go. */
  private replace = false;
  private failed = false;
  private closed = false;

  constructor(
    private readonly store: Store,
    private readonly node: string,
    private readonly log: Logger,
  ) {}

  /** The user has a session here; or had, until `endedAt` (an unread mark), and their grace period runs here. */
  held(pid: number, uid: bigint, endedAt?: bigint): void {
    this.change({ pid, uid, held: true, endedAt });
  }

  /** This node no longer holds the user's presence: it ended, or goes on on another node. */
  released(pid: number, uid: bigint): void {
    this.change({ pid, uid, held: false });
  }

  /** A write failed since the last `replaceAll`: some records in the store may be wrong. */
  get lost(): boolean {
    return this.failed;
  }

  /** Records these presences, and only these: every other record of this node goes. */
  replaceAll(presences: Iterable<{ pid: number; uid: bigint; endedAt?: bigint }>): void {
    this.failed = false;
    this.replace = true;
    for (const { pid, uid, endedAt } of presences) this.held(pid, uid, endedAt);
    this.schedule(); // even with none: the write clears the others
  }

  /** Resolves when the writes queued so far are done. */
  idle(): Promise<void> {
    return this.written;
  }

  /** Waits for the writes queued so far; later changes are dropped (the node's records go at a stop). */
  async close(): Promise<void> {
    await this.idle();
    this.closed = true;
  }

  private change(change: NodePresence): void {
    if (this.closed) return; // a session closing late, after the stop
    this.changes.set(`${change.pid}:${change.uid}`, change);
    this.schedule();
  }

  private schedule(): void {
    if (this.scheduled) return;
    this.scheduled = true;
    this.written = this.written.then(async () => {
      this.scheduled = false;
      const changes = [...this.changes.values()];
      const replace = this.replace;
      this.changes.clear();
      this.replace = false;
      if (changes.length === 0 && !replace) return;
      try {
        await this.store.recordPresences(this.node, changes, replace);
      } catch (err) {
        if (!this.failed)
          this.log.warn({ err }, 'could not record presences in the store (they matter only if this node dies); will record them again');
        this.failed = true;
      }
    });
  }
}
