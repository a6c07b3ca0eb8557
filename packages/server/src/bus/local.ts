import { randomUUID } from 'node:crypto';
import type { Bus, BusEvent, BusHandler, OnlineAnswer, OnlineResponder } from './bus.js';

/**
 * The single-node bus: events are handled synchronously, in publish order, on this node only. It
 * has no outage to recover from: it never calls `onReconnect`.
 */
export class LocalBus implements Bus {
  readonly nodeId = `local-${randomUUID().slice(0, 8)}`;
  private handler: BusHandler | undefined;
  private responder: OnlineResponder | undefined;

  async start(handler: BusHandler, responder: OnlineResponder): Promise<void> {
    this.handler = handler;
    this.responder = responder;
  }

  publish(event: BusEvent): void {
    this.handler?.(event);
  }

  /** No other node can be heard: one that shares the store is on a bus of its own. */
  heardNodes(): string[] {
    return [];
  }

  async queryOnline(pid: number, uids: bigint[]): Promise<bigint[]> {
    return this.responder ? this.responder(pid, uids) : [];
  }

  async askOnline(pid: number, uids: bigint[]): Promise<OnlineAnswer> {
    return { online: await this.queryOnline(pid, uids), answered: new Set([this.nodeId]) };
  }

  async close(): Promise<void> {
    this.handler = undefined;
    this.responder = undefined;
  }
}
