import { FpnnErrorCode, RtmError, RtmErrorCode } from '@rtm/fpnn';
import type { ListenState } from '../services/listen.js';

/** The keys of addlisten / removelisten / setlisten (server-api.md §4 "Listening"). */
export interface ListenLists {
  gids?: bigint[];
  rids?: bigint[];
  uids?: bigint[];
  events?: string[];
}

export interface ListenFlags {
  p2p?: boolean;
  group?: boolean;
  room?: boolean;
  ev?: boolean;
}

const LIST_KEYS = ['gids', 'rids', 'uids', 'events'] as const;
const FLAG_KEYS = ['p2p', 'group', 'room', 'ev'] as const;

const hasAnyList = (r: ListenLists): boolean => LIST_KEYS.some((k) => r[k] !== undefined);
const hasAnyFlag = (r: ListenFlags): boolean => FLAG_KEYS.some((k) => r[k] !== undefined);

/** addlisten / removelisten need at least one of the four lists. */
function requireSomeList(method: string, r: ListenLists): void {
  if (!hasAnyList(r)) throw new RtmError(FpnnErrorCode.PROTO_KEY_NOT_FOUND, `${method} needs at least one of gids, rids, uids, events`);
}

/** Longest event name kept (the defined ones are `login` and `logout`; others are kept but never match). */
const MAX_EVENT_NAME_BYTES = 64;

/** Items of the four lists together. */
const itemCount = (s: ListenState): number => s.gids.size + s.rids.size + s.uids.size + s.events.size;

/**
 * A listen state lives as long as its connection: the four lists together hold at most `max`
 * items (Limits.maxListenItems), or the quest is refused whole (200032) and changes nothing.
 * `replace` (setlisten): the lists given become the four lists, those not given empty
 * (`setListen`), so only the given ones count: a setlisten that shrinks the state is never refused.
 */
function checkListen(method: string, s: ListenState, r: ListenLists, max: number, replace: boolean): void {
  for (const ev of r.events ?? []) {
    if (Buffer.byteLength(ev) > MAX_EVENT_NAME_BYTES) {
      throw new RtmError(RtmErrorCode.INVALID_PARAMETER, `${method}: an event name is at most ${MAX_EVENT_NAME_BYTES} bytes`);
    }
  }
  let after = replace ? 0 : itemCount(s);
  const adding = (list: readonly unknown[] | undefined, set: ReadonlySet<unknown>): void => {
    if (!list) return;
    const items = new Set(list);
    if (replace) after += items.size;
    else for (const item of items) if (!set.has(item)) after++;
  };
  adding(r.gids, s.gids);
  adding(r.rids, s.rids);
  adding(r.uids, s.uids);
  adding(r.events, s.events);
  if (after > max) {
    throw new RtmError(
      RtmErrorCode.TOO_MANY_ITEMS_IN_PARAMETERS,
      `${method}: this connection would listen to ${after} ids and events, the limit is ${max} (RTM_MAX_LISTEN_ITEMS)`,
    );
  }
}

/** addlisten: add to the sets (at most `max` items in all). */
export function addListen(s: ListenState, r: ListenLists, max = Infinity): void {
  requireSomeList('addlisten', r);
  checkListen('addlisten', s, r, max, false);
  for (const id of r.gids ?? []) s.gids.add(id);
  for (const id of r.rids ?? []) s.rids.add(id);
  for (const id of r.uids ?? []) s.uids.add(id);
  for (const ev of r.events ?? []) s.events.add(ev);
}

/** removelisten: remove from the sets (the "all" flags are not touched). */
export function removeListen(s: ListenState, r: ListenLists): void {
  requireSomeList('removelisten', r);
  for (const id of r.gids ?? []) s.gids.delete(id);
  for (const id of r.rids ?? []) s.rids.delete(id);
  for (const id of r.uids ?? []) s.uids.delete(id);
  for (const ev of r.events ?? []) s.events.delete(ev);
}

/**
 * setlisten (proposal of server-api.md §4): any boolean key present → the four flags are set
 * (absent = false) and the lists stay; any list key present → the four lists are replaced (absent =
 * empty) and the flags stay; both kinds in one quest do both (Python restores "all" then lists in
 * two quests: neither may undo the other). A quest with neither is the "all" form with every flag
 * false: the C# server SDK's SetListen(false, false, false, false) sends only the flags that are
 * true, so that is how it turns "listen to all" off; the lists stay.
 */
export function setListen(s: ListenState, r: ListenLists & ListenFlags, max = Infinity): void {
  if (hasAnyList(r)) checkListen('setlisten', s, r, max, true);
  if (hasAnyFlag(r) || !hasAnyList(r)) {
    s.p2p = r.p2p ?? false;
    s.group = r.group ?? false;
    s.room = r.room ?? false;
    s.ev = r.ev ?? false;
  }
  if (hasAnyList(r)) {
    s.gids = new Set(r.gids ?? []);
    s.rids = new Set(r.rids ?? []);
    s.uids = new Set(r.uids ?? []);
    s.events = new Set(r.events ?? []);
  }
}
