import { conversationOfRef } from './conversation.js';
import type { HistoryQuery, HistoryWindow, MaybePromise, StoredMessage } from './store.js';

/**
 * Type-filtered history that reads a bounded part of a conversation (`Store.historyWithin`).
 *
 * Why: a page filtered by type used to read the conversation newest first (or oldest first) and
 * keep the rows of those types, so a type that is rare (a gallery of images) or absent (the last
 * chat message of a conversation where an app sends only custom types) read the whole
 * conversation: 250,000 rows took a quarter of a second on SQLite, on the event loop. An index per
 * (conversation, type) would make them seeks, but it costs one more randomly placed index page per
 * message written, measured at +30 – 60 % of the store's write CPU: every send would pay for a
 * rare read. So a filtered page reads:
 * 1. the PROBE_ROWS nearest rows: a page of any common type is there, as cheap as before;
 * 2. else up to `maxScan` rows, and stops there, saying where (`scannedTo`): the caller's next page
 *    goes on from that row.
 */
export const PROBE_ROWS = 200;

/** What a history query reads: the conversation's key (pid, kind, conv_lo, conv_hi) and exclusive id bounds. */
export interface HistoryRange {
  key: unknown[];
  lo: bigint;
  hi: bigint;
}

/**
 * The range a history query reads: the store's exclusive id bounds of its begin/end window (none
 * when the window holds no message), cut at the query's `lastid` cursor; undefined when empty.
 */
export function historyRange(query: HistoryQuery, bounds: { lo: bigint; hi: bigint } | undefined): HistoryRange | undefined {
  if (!bounds) return undefined;
  const c = conversationOfRef(query.conversation);
  let { lo, hi } = bounds;
  const lastid = query.lastid ?? 0n;
  if (lastid !== 0n) {
    if (query.desc) hi = lastid < hi ? lastid : hi;
    else lo = lastid > lo ? lastid : lo;
  }
  return lo < hi ? { key: [c.pid, c.kind, c.lo, c.hi], lo, hi } : undefined;
}

/** `range` from its start, in page order, through `edge` (inclusive); all of it without an edge. */
export function throughEdge(range: HistoryRange, desc: boolean, edge: bigint | undefined): HistoryRange {
  if (edge === undefined) return range;
  return desc ? { ...range, lo: edge - 1n } : { ...range, hi: edge + 1n };
}

/**
 * @param edgeAt the id of the n-th row of the query's range in page order (deleted or of any type),
 *   undefined when the range holds fewer rows
 * @param read the filtered page, from the range's start through `edge` (inclusive), or all of the
 *   range when `edge` is undefined
 */
export async function historyWindow(
  num: number,
  maxScan: number,
  edgeAt: (n: number) => MaybePromise<bigint | undefined>,
  read: (edge: bigint | undefined) => MaybePromise<StoredMessage[]>,
): Promise<HistoryWindow> {
  const probe = Math.min(PROBE_ROWS, maxScan);
  for (const n of probe < maxScan ? [probe, maxScan] : [maxScan]) {
    const edge = await edgeAt(n);
    const messages = await read(edge);
    if (messages.length >= num || edge === undefined) return { messages };
    if (n === maxScan) return { messages, scannedTo: edge };
  }
  throw new Error('historyWindow: unreachable');
}
