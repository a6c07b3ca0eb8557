/**
 * Helpers shared by the Store implementations: conversation keys, message content equality,
 * int64 validation, row shapes both SQL stores return. No I/O.
 */
import { StrBytes } from '@rtm/fpnn/str-bytes';
import {
  MessageKind,
  type ConversationRef,
  type NewMessage,
  type PendingPresenceEnd,
  type PresenceHolder,
  type UnreadCount,
} from './store.js';

/** Key of the conversation a message belongs to (DESIGN.md "Storage"). */
export interface ConversationKey {
  pid: number;
  kind: MessageKind;
  /** p2p: the lower uid; group/room: gid/rid; broadcast: 0n. */
  lo: bigint;
  /** p2p: the higher uid; otherwise 0n. */
  hi: bigint;
}

export function conversationOfMessage(m: { pid: number; kind: MessageKind; from: bigint; to: bigint }): ConversationKey {
  if (m.kind === MessageKind.P2P) {
    return m.from < m.to ? { pid: m.pid, kind: m.kind, lo: m.from, hi: m.to } : { pid: m.pid, kind: m.kind, lo: m.to, hi: m.from };
  }
  if (m.kind === MessageKind.BROADCAST) return { pid: m.pid, kind: m.kind, lo: 0n, hi: 0n };
  return { pid: m.pid, kind: m.kind, lo: m.to, hi: 0n };
}

export function conversationOfRef(ref: ConversationRef): ConversationKey {
  if (ref.kind === MessageKind.P2P) {
    return ref.uid < ref.peer
      ? { pid: ref.pid, kind: ref.kind, lo: ref.uid, hi: ref.peer }
      : { pid: ref.pid, kind: ref.kind, lo: ref.peer, hi: ref.uid };
  }
  if (ref.kind === MessageKind.BROADCAST) return { pid: ref.pid, kind: ref.kind, lo: 0n, hi: 0n };
  return { pid: ref.pid, kind: ref.kind, lo: ref.to, hi: 0n };
}

/** Same body kind (str / bin) and same bytes. */
export function sameBody(a: string | Uint8Array, b: string | Uint8Array): boolean {
  if (typeof a === 'string' || typeof b === 'string') return a === b;
  if (a instanceof StrBytes !== b instanceof StrBytes) return false; // a str and a bin of the same bytes
  if (a.byteLength !== b.byteLength) return false;
  for (let i = 0; i < a.byteLength; i++) if (a[i] !== b[i]) return false;
  return true;
}

/** The duplicate test of `AppendResult`: same mtype, body (kind and bytes) and attrs. */
export function sameContent(a: Pick<NewMessage, 'mtype' | 'msg' | 'attrs'>, b: Pick<NewMessage, 'mtype' | 'msg' | 'attrs'>): boolean {
  return a.mtype === b.mtype && a.attrs === b.attrs && sameBody(a.msg, b.msg);
}

export const INT64_MIN = -(2n ** 63n);
export const INT64_MAX = 2n ** 63n - 1n;

/** Throws a RangeError naming `field` unless `v` is a bigint in the signed 64-bit range. */
export function checkInt64(field: string, v: unknown): void {
  if (typeof v !== 'bigint' || v < INT64_MIN || v > INT64_MAX) {
    throw new RangeError(`${field} must be a bigint in the int64 range, got ${String(v)}`);
  }
}

/** Validates a message before it joins a group commit, so one bad batch cannot fail the others. */
export function checkNewMessage(m: NewMessage): void {
  if (!Number.isSafeInteger(m.pid)) throw new RangeError(`pid must be an integer, got ${String(m.pid)}`);
  if (m.kind !== 1 && m.kind !== 2 && m.kind !== 3 && m.kind !== 4) throw new RangeError(`bad message kind ${String(m.kind)}`);
  checkInt64('from', m.from);
  checkInt64('to', m.to);
  checkInt64('mid', m.mid);
  if (!Number.isInteger(m.mtype)) throw new RangeError(`mtype must be an integer, got ${String(m.mtype)}`);
  if (typeof m.msg !== 'string' && !(m.msg instanceof Uint8Array)) throw new TypeError('msg must be a string or a Uint8Array');
  if (typeof m.attrs !== 'string') throw new TypeError('attrs must be a string');
  // PostgreSQL's text cannot hold U+0000; refused alike by every store (services/text.ts).
  if (m.attrs.includes('\u0000')) throw new RangeError('attrs must not contain U+0000');
}

/** A plain Uint8Array view of bytes returned by a driver (Buffer), so results compare equal across stores. */
export function plainBytes(b: Uint8Array): Uint8Array {
  return new Uint8Array(b.buffer, b.byteOffset, b.byteLength);
}

/** Unread counts from rows of (k: peer or gid, n: count, t: newest mtime), as both SQL stores select them. */
export function unreadMap(rows: readonly Record<string, unknown>[]): Map<bigint, UnreadCount> {
  const out = new Map<bigint, UnreadCount>();
  for (const r of rows) out.set(r['k'] as bigint, { count: Number(r['n']), ltime: r['t'] as bigint });
  return out;
}

/** Rows of `node_presences` (node, ended_at) as `Store.presenceHolders` answers them. */
export function presenceHolders(rows: readonly Record<string, unknown>[]): PresenceHolder[] {
  return rows.map((r) => {
    const holder: PresenceHolder = { node: r['node'] as string };
    if (r['ended_at'] != null) holder.endedAt = r['ended_at'] as bigint;
    if (r['seen_at'] != null) holder.seenAt = BigInt(r['seen_at'] as bigint | number | string);
    return holder;
  });
}

/**
 * Presence ends from rows of (pid, uid, ended_at, deadline), as both SQL stores return them from
 * `DELETE … RETURNING` (in no set order): earliest deadline first.
 */
export function presenceEnds(rows: readonly Record<string, unknown>[]): PendingPresenceEnd[] {
  return rows
    .map((r) => ({ pid: Number(r['pid']), uid: r['uid'] as bigint, endedAt: r['ended_at'] as bigint, deadline: r['deadline'] as bigint }))
    .sort((a, b) => (a.deadline < b.deadline ? -1 : a.deadline > b.deadline ? 1 : 0));
}

/**
 * `err` of a schema migration step that failed, naming the step for the operator's log. Both
 * stores run a start's steps in one transaction, rolled back then: the database is as it was.
 * The same error otherwise (class and fields: main.ts tells a refusal from an outage by them).
 */
export function failedMigration(err: unknown, m: { version: number; name: string }): unknown {
  if (err instanceof Error) {
    err.message = `schema migration ${m.version} (${m.name}) failed, none of this start's migrations applied: ${err.message}`;
  }
  return err;
}
