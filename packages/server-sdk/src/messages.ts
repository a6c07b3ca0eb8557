import type { Payload } from '@rtm/fpnn';
import { FpnnErrorCode, RtmError, RtmErrorCode } from '@rtm/fpnn';
import type {
  HistoryMessage,
  HistoryPage,
  PushEvent,
  PushGroupMessage,
  PushP2PMessage,
  PushRoomMessage,
  RetrievedMessage,
} from './types.js';
import { bodyValue, has, idValue, intValue, readId, readInt, readString, stringValue } from './wire.js';

/** How the second element of a history row is read (server-api.md §3.1). */
export type HistoryKind =
  { kind: 'p2p'; uid: bigint; ouid: bigint } | { kind: 'group'; gid: bigint } | { kind: 'room'; rid: bigint } | { kind: 'broadcast' };

/** P2P rows carry a direction instead of the sender: 1 = sent by `uid`, 2 = sent by `ouid`. */
export const P2PDirection = { SENT_BY_UID: 1, SENT_BY_OUID: 2 } as const;

function boolValue(value: unknown): boolean {
  return value === true || value === 1 || value === 1n;
}

/** One 8-element history row → `HistoryMessage`; `undefined` for rows to skip (as the Python SDK does). */
export function historyRow(row: unknown, target: HistoryKind, where: string): HistoryMessage | undefined {
  if (!Array.isArray(row) || row.length !== 8) return undefined;
  const [id, second, mtype, mid, deleted, msg, attrs, mtime] = row as unknown[];
  let fromUid: bigint;
  let toId: bigint;
  switch (target.kind) {
    case 'p2p': {
      const direction = intValue(second, 'msgs[][1]', where);
      if (direction === P2PDirection.SENT_BY_UID) [fromUid, toId] = [target.uid, target.ouid];
      else if (direction === P2PDirection.SENT_BY_OUID) [fromUid, toId] = [target.ouid, target.uid];
      else throw new RtmError(FpnnErrorCode.CORE_INVALID_PACKAGE, `${where}: p2p direction must be 1 or 2, got ${direction}`);
      break;
    }
    case 'group':
      [fromUid, toId] = [idValue(second, 'msgs[][1]', where), target.gid];
      break;
    case 'room':
      [fromUid, toId] = [idValue(second, 'msgs[][1]', where), target.rid];
      break;
    case 'broadcast':
      [fromUid, toId] = [idValue(second, 'msgs[][1]', where), 0n];
      break;
  }
  return {
    id: idValue(id, 'msgs[][0]', where),
    fromUid,
    toId,
    mtype: intValue(mtype, 'msgs[][2]', where),
    mid: idValue(mid, 'msgs[][3]', where),
    deleted: boolValue(deleted),
    message: bodyValue(msg, 'msgs[][5]', where),
    attrs: stringValue(attrs ?? '', 'msgs[][6]', where),
    mtime: idValue(mtime, 'msgs[][7]', where),
  };
}

/** A history answer `{ num, lastid, begin, end, msgs }` → `HistoryPage`. */
export function historyPage(answer: Payload, target: HistoryKind, where: string): HistoryPage {
  const rows = answer.msgs ?? [];
  if (!Array.isArray(rows)) throw new RtmError(FpnnErrorCode.CORE_INVALID_PACKAGE, `${where}: 'msgs' is not a list`);
  const messages: HistoryMessage[] = [];
  for (const row of rows) {
    const message = historyRow(row, target, where);
    if (message) messages.push(message);
  }
  return {
    num: messages.length,
    lastid: readId(answer, 'lastid', where),
    begin: readId(answer, 'begin', where),
    end: readId(answer, 'end', where),
    messages,
  };
}

/** A `getmsg` answer. An answer without `id` means "no such message" (Node SDK) → 200070. */
export function retrievedMessage(answer: Payload, where: string): RetrievedMessage {
  if (!has(answer, 'id')) throw new RtmError(RtmErrorCode.MESSAGE_NOT_FOUND, `${where}: message not found`);
  return {
    id: readId(answer, 'id', where),
    mtype: readInt(answer, 'mtype', where),
    message: bodyValue(answer.msg ?? '', 'msg', where),
    attrs: has(answer, 'attrs') ? readString(answer, 'attrs', where) : '',
    mtime: readId(answer, 'mtime', where),
  };
}

function common(
  p: Payload,
  where: string,
): { fromUid: bigint; mtype: number; mid: bigint; message: string | Uint8Array; attrs: string; mtime: bigint } {
  return {
    fromUid: readId(p, 'from', where),
    mtype: readInt(p, 'mtype', where),
    mid: readId(p, 'mid', where),
    message: bodyValue(p.msg ?? '', 'msg', where),
    attrs: has(p, 'attrs') ? readString(p, 'attrs', where) : '',
    mtime: readId(p, 'mtime', where),
  };
}

export function pushP2PMessage(p: Payload): PushP2PMessage {
  return { ...common(p, 'pushmsg'), toUid: readId(p, 'to', 'pushmsg') };
}

export function pushGroupMessage(p: Payload): PushGroupMessage {
  return { ...common(p, 'pushgroupmsg'), gid: readId(p, 'gid', 'pushgroupmsg') };
}

export function pushRoomMessage(p: Payload): PushRoomMessage {
  return { ...common(p, 'pushroommsg'), rid: readId(p, 'rid', 'pushroommsg') };
}

export function pushEvent(p: Payload): PushEvent {
  const where = 'pushevent';
  const event: PushEvent = {
    pid: readInt(p, 'pid', where),
    event: readString(p, 'event', where),
    uid: readId(p, 'uid', where),
    time: readInt(p, 'time', where),
    endpoint: has(p, 'endpoint') ? readString(p, 'endpoint', where) : '',
  };
  if (has(p, 'data')) event.data = readString(p, 'data', where);
  return event;
}

/**
 * Remembers recently pushed messages so a re-push (same kind, sender, target, mid) is emitted once
 * (server-api.md §6: Python/Go keep ~5 min). Expired entries are pruned as new ones arrive, and
 * past `maxEntries` the oldest go first: memory stays bounded at any push rate, and a re-push comes
 * seconds after the original (a reconnect), well inside what is kept even then.
 */
export class PushDedup {
  private readonly seen = new Map<string, number>();

  constructor(
    private readonly windowMs: number,
    private readonly maxEntries = Infinity,
    private readonly now: () => number = Date.now,
  ) {}

  /** true the first time a key is seen within the window. */
  firstTime(key: string): boolean {
    if (this.windowMs <= 0) return true;
    const now = this.now();
    // Map iteration is insertion order, i.e. oldest first: drop expired entries from the front.
    for (const [k, at] of this.seen) {
      if (now - at < this.windowMs) break;
      this.seen.delete(k);
    }
    if (this.seen.has(key)) return false;
    if (this.seen.size >= this.maxEntries) {
      const oldest = this.seen.keys().next();
      if (!oldest.done) this.seen.delete(oldest.value);
    }
    this.seen.set(key, now);
    return true;
  }

  clear(): void {
    this.seen.clear();
  }
}
