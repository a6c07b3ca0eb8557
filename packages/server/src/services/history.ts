import { RtmError, RtmErrorCode, type Payload } from '@rtm/fpnn';
import type { ServerConfig } from '../config.js';
import type { ConversationRef, Store } from '../store/store.js';
import { historyEntry, type Audience } from './pushes.js';

export interface PageRequest {
  desc: boolean;
  num: number;
  begin?: bigint;
  end?: bigint;
  lastid?: bigint;
  mtypes?: number[];
}

/**
 * Rows of its conversation a page filtered by `mtypes` reads at most (store/history-window.ts):
 * a type that is rare there gives a short page, or an empty one, whose `lastid` goes on from
 * where the read stopped. About 10 ms of SQLite's time at the most, instead of a whole conversation.
 */
export const FILTERED_PAGE_SCAN_ROWS = 10_000;

/**
 * The time bounds of a history page or a message count (server-api.md §3.1, §3.4), in ms: ≤ 0 or
 * absent = none; a `begin` after `end` is 200034 (it could only ever match nothing).
 */
export function timeBounds(req: { begin?: bigint; end?: bigint }): { begin?: bigint; end?: bigint } {
  const begin = req.begin && req.begin > 0n ? req.begin : undefined;
  const end = req.end && req.end > 0n ? req.end : undefined;
  if (begin !== undefined && end !== undefined && begin > end) {
    throw new RtmError(RtmErrorCode.INVALID_PARAMETER, `begin (${begin}) is after end (${end})`);
  }
  return { begin, end };
}

/**
 * History pages (server-api.md §3.1): `{ num, lastid, begin, end, msgs }` with 8-item entries.
 * Cursor (proposal): lastid = id of the last entry (unchanged when the page is empty), or of the
 * last row read when a filtered page stopped at FILTERED_PAGE_SCAN_ROWS; desc pages move `end` to
 * the last entry's mtime, asc pages move `begin`. `audience`: a client reads text bodies as
 * strings (pushes.ts `clientStoredBody`), a backend as they were sent.
 */
export class History {
  constructor(
    private readonly config: ServerConfig,
    private readonly store: Store,
  ) {}

  async page(audience: Audience, conversation: ConversationRef, reader: bigint | undefined, req: PageRequest): Promise<Payload> {
    if (req.num <= 0) throw new RtmError(RtmErrorCode.INVALID_PARAMETER, `num must be at least 1, got ${req.num}`);
    const num = Math.min(req.num, this.config.limits.historyMaxNum);
    const { begin, end } = timeBounds(req);
    const lastid = req.lastid && req.lastid > 0n ? req.lastid : undefined;
    const { messages, scannedTo } = await this.store.historyWithin(
      { conversation, desc: req.desc, num, begin, end, lastid, mtypes: req.mtypes?.length ? req.mtypes : undefined },
      FILTERED_PAGE_SCAN_ROWS,
    );
    const last = messages[messages.length - 1];
    return {
      num: messages.length,
      lastid: scannedTo ?? (last ? last.id : (lastid ?? 0n)),
      begin: !req.desc && last ? last.mtime : (begin ?? 0n),
      end: req.desc && last ? last.mtime : (end ?? 0n),
      msgs: messages.map((m) => historyEntry(m, audience, reader)),
    };
  }
}
