import { RtmError, RtmErrorCode, type Payload } from '@rtm/fpnn';
import type { ServerConfig } from '../config.js';
import type { ConversationRef, Store } from '../store/store.js';
import { historyEntry } from './pushes.js';

export interface PageRequest {
  desc: boolean;
  num: number;
  begin?: bigint;
  end?: bigint;
  lastid?: bigint;
  mtypes?: number[];
}

/**
 * History pages (server-api.md §3.1): `{ num, lastid, begin, end, msgs }` with 8-item entries.
 * Cursor (proposal): lastid = id of the last entry (unchanged when the page is empty); desc pages
 * move `end` to the last entry's mtime, asc pages move `begin`.
 */
export class History {
  constructor(
    private readonly config: ServerConfig,
    private readonly store: Store,
  ) {}

  async page(conversation: ConversationRef, reader: bigint | undefined, req: PageRequest): Promise<Payload> {
    if (req.num <= 0) throw new RtmError(RtmErrorCode.INVALID_PARAMETER, `num must be at least 1, got ${req.num}`);
    const num = Math.min(req.num, this.config.limits.historyMaxNum);
    const begin = req.begin && req.begin > 0n ? req.begin : undefined;
    const end = req.end && req.end > 0n ? req.end : undefined;
    if (begin !== undefined && end !== undefined && begin > end) {
      throw new RtmError(RtmErrorCode.INVALID_PARAMETER, `begin (${begin}) is after end (${end})`);
    }
    const lastid = req.lastid && req.lastid > 0n ? req.lastid : undefined;
    const messages = await this.store.history({
      conversation,
      desc: req.desc,
      num,
      begin,
      end,
      lastid,
      mtypes: req.mtypes?.length ? req.mtypes : undefined,
    });
    const last = messages[messages.length - 1];
    return {
      num: messages.length,
      lastid: last ? last.id : (lastid ?? 0n),
      begin: !req.desc && last ? last.mtime : (begin ?? 0n),
      end: req.desc && last ? last.mtime : (end ?? 0n),
      msgs: messages.map((m) => historyEntry(m, reader)),
    };
  }
}
