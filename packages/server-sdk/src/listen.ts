import { RtmError, RtmErrorCode, type Payload } from '@rtm/fpnn';
import type { ListenAll, ListenLists } from './types.js';
import { toIds } from './wire.js';

export interface ResolvedLists {
  gids?: bigint[];
  rids?: bigint[];
  uids?: bigint[];
  events?: string[];
}

const LIST_KEYS = ['gids', 'rids', 'uids'] as const;

/** Validates and normalises the lists a caller gave; only the given keys are kept (as the Python SDK sends them). */
export function resolveLists(lists: ListenLists): ResolvedLists {
  const out: ResolvedLists = {};
  for (const key of LIST_KEYS) {
    const value = lists[key];
    if (value !== undefined) out[key] = toIds(value, key);
  }
  // Checked rather than coerced: `String(1)` would listen to an event named "1", and a list that is
  // not an array would throw a TypeError instead of the RtmError every other bad argument gets.
  const events: unknown = lists.events;
  if (events !== undefined) {
    if (!Array.isArray(events)) throw new RtmError(RtmErrorCode.INVALID_PARAMETER, 'events must be an array of event names');
    events.forEach((name: unknown, i) => {
      if (typeof name !== 'string') throw new RtmError(RtmErrorCode.INVALID_PARAMETER, `events[${i}] must be a string, got ${typeof name}`);
    });
    out.events = [...(events as string[])];
  }
  return out;
}

/** `setlisten` "all" flags on the wire: p2p, group, room, ev (absent = false, server-api.md §4). */
export interface ListenFlags {
  p2p: boolean;
  group: boolean;
  room: boolean;
  ev: boolean;
}

export function resolveFlags(all: ListenAll): ListenFlags {
  return { p2p: all.p2p === true, group: all.group === true, room: all.room === true, ev: all.events === true };
}

/**
 * What this client listens to. Listen state belongs to one server connection (server-api.md §4), so
 * the client keeps its own copy, updated after each successful call, and re-sends it with one
 * `setlisten` on every new connection.
 */
export class ListenState {
  private flags: ListenFlags | undefined;
  private lists: { gids: Set<bigint>; rids: Set<bigint>; uids: Set<bigint>; events: Set<string> } | undefined;

  private ensureLists(): NonNullable<ListenState['lists']> {
    return (this.lists ??= { gids: new Set(), rids: new Set(), uids: new Set(), events: new Set() });
  }

  add(lists: ResolvedLists): void {
    const own = this.ensureLists();
    for (const key of LIST_KEYS) for (const id of lists[key] ?? []) own[key].add(id);
    for (const name of lists.events ?? []) own.events.add(name);
  }

  remove(lists: ResolvedLists): void {
    if (!this.lists) return;
    for (const key of LIST_KEYS) for (const id of lists[key] ?? []) this.lists[key].delete(id);
    for (const name of lists.events ?? []) this.lists.events.delete(name);
  }

  /** `setlisten` list form: replaces all four lists (absent = empty). */
  replaceLists(lists: ResolvedLists): void {
    this.lists = undefined;
    this.add(lists);
  }

  /** `setlisten` "all" form: replaces the four flags. */
  replaceFlags(flags: ListenFlags): void {
    this.flags = { ...flags };
  }

  /** The `setlisten` payload restoring this state, or undefined when nothing was ever set. */
  restorePayload(): Payload | undefined {
    if (!this.flags && !this.lists) return undefined;
    const payload: Payload = {};
    if (this.flags) Object.assign(payload, this.flags);
    if (this.lists) {
      payload.gids = [...this.lists.gids];
      payload.rids = [...this.lists.rids];
      payload.uids = [...this.lists.uids];
      payload.events = [...this.lists.events];
    }
    return payload;
  }

  snapshot(): { flags?: ListenFlags; gids: bigint[]; rids: bigint[]; uids: bigint[]; events: string[] } {
    const l = this.lists;
    const snap = { gids: [...(l?.gids ?? [])], rids: [...(l?.rids ?? [])], uids: [...(l?.uids ?? [])], events: [...(l?.events ?? [])] };
    return this.flags ? { flags: { ...this.flags }, ...snap } : snap;
  }
}
