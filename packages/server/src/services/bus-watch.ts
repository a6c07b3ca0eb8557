import type { Bus } from '../bus/bus.js';
import type { Logger } from '../observability/logger.js';
import type { Metrics } from '../observability/metrics.js';
import type { Store } from '../store/store.js';

/** A node unheard on the bus for this long while alive in the store is on another bus: longer than NatsBus forgets a peer (6 s). */
export const UNHEARD_MS = 15_000;

/**
 * Nodes that share the store but not the bus. A node started with another RTM_BUS_PREFIX, or on
 * another NATS, hears no one and is heard by no one: every push between it and the others is
 * lost, yet each looks healthy on its own (a sole node hears no one either). The store knows
 * better: every node touches it at every sweep. At each sweep, the nodes alive there (touched
 * within RTM_NODE_LEASE_MS) are compared with those the bus hears; one unheard for longer than
 * `unheardMs` is warned of once, and an info line says when it is heard again.
 *
 * Not judged: while this node's own bus is down (it hears no one then; the outage has its own
 * lines), and until the bus has been up for `unheardMs` (after a start or an outage, the others
 * need a heartbeat to be heard). A node that died stays alive in the store up to a lease after
 * its last heartbeat: the wait is longer than the lease too, so a crash is never taken for a bus
 * mismatch.
 */
export class BusWatch {
  /** Since when the bus has been up without a break (ms); undefined while it is down. */
  private upSince: number | undefined;
  /** When each node alive in the store was last heard on the bus (ms). */
  private readonly lastHeard = new Map<string, number>();
  /** The nodes warned of and not heard since. */
  private readonly warned = new Set<string>();
  private readonly unheardMs: number;

  constructor(
    private readonly store: Store,
    private readonly bus: Bus,
    private readonly log: Logger,
    private readonly metrics: Metrics,
    private readonly leaseMs: number,
    sweepMs: number,
  ) {
    this.unheardMs = Math.max(UNHEARD_MS, leaseMs + sweepMs);
  }

  /** One look, at a sweep (`now`: ms, wall clock). */
  async check(now: number): Promise<void> {
    if (!this.bus.heardNodes) return;
    if (this.bus.connected === false) return this.down();
    this.upSince ??= now;
    const alive = (await this.store.liveNodes(BigInt(now - this.leaseMs))).filter((n) => n !== this.bus.nodeId);
    const heard = new Set(this.bus.heardNodes());
    for (const node of new Set([...this.lastHeard.keys(), ...this.warned])) if (!alive.includes(node)) this.forget(node);
    for (const node of alive) {
      if (heard.has(node)) this.heard(node, now);
      else if (now - Math.max(this.upSince, this.lastHeard.get(node) ?? 0) > this.unheardMs) this.unheard(node, now);
    }
    this.metrics.busUnheardNodes.set(this.warned.size);
  }

  /** This node's bus is down: no judgement now, and a fresh wait once it is back. */
  private down(): void {
    this.upSince = undefined;
    this.warned.clear();
    this.metrics.busUnheardNodes.set(0);
  }

  private heard(node: string, now: number): void {
    this.lastHeard.set(node, now);
    if (this.warned.delete(node)) this.log.info({ node }, 'a node alive in the store is heard on the bus again');
  }

  private unheard(node: string, now: number): void {
    if (this.warned.has(node)) return;
    this.warned.add(node);
    const since = this.lastHeard.get(node);
    this.log.warn(
      { node, unheardMs: now - Math.max(this.upSince ?? now, since ?? 0), heardBefore: since !== undefined },
      'a node alive in the store is not heard on the bus: pushes between it and this node are lost. ' +
        'Is it on another bus (RTM_BUS_PREFIX or the ?prefix= of RTM_BUS misspelt, RTM_BUS naming another NATS or missing), ' +
        'or cut off from NATS (a partition)?',
    );
  }

  /** Stopped, or dead for longer than the lease: no longer alive in the store. */
  private forget(node: string): void {
    this.lastHeard.delete(node);
    this.warned.delete(node);
  }
}
