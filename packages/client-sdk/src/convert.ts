import { asInt64, RtmErrorCode, RtmError, type Payload } from '@rtm/fpnn';
import type { Conversation, HistoryMessage, HistoryPage, Id, MessageBody, P2PHistoryMessage, TranslatedInfo } from './types.js';

const utf8 = new TextDecoder();

// ---- outgoing: app values → wire values ----

const INT64_MIN = -(2n ** 63n);
const INT64_MAX = 2n ** 63n - 1n;

function invalid(name: string, why: string): RtmError {
  return new RtmError(RtmErrorCode.INVALID_PARAMETER, `'${name}' ${why}`);
}

/**
 * An id or ms timestamp for the wire: always a bigint, so msgpack writes int64 as the browser SDK
 * does. A `number` must be a safe integer: above 2^53 it has already lost precision (ids do go
 * that high), and sending the rounded value would address another user or message. Rejected as
 * the server SDK does (200034).
 */
export function wireId(value: Id, name: string): bigint {
  if (typeof value === 'bigint') {
    if (value < INT64_MIN || value > INT64_MAX) throw invalid(name, 'must be a signed 64-bit integer (int64), as the server reads ids');
    return value;
  }
  if (typeof value === 'number' && Number.isSafeInteger(value)) return BigInt(value);
  throw invalid(name, `must be a bigint or a safe integer, got ${typeof value === 'number' ? value : typeof value}`);
}

export function wireIds(values: readonly Id[], name: string): bigint[] {
  if (!Array.isArray(values)) throw invalid(name, 'must be an array of ids');
  return values.map((v, i) => wireId(v, `${name}[${i}]`));
}

export function optionalId(value: Id | undefined, name: string): bigint | undefined {
  return value === undefined || value === null ? undefined : wireId(value, name);
}

// ---- incoming: wire values → app values (lenient: any integer width, float64, decimal string) ----

/** A 64-bit integer from the wire as a bigint; 0n when absent or not an integer. */
export function readId(value: unknown): bigint {
  return asInt64(value) ?? 0n;
}

export function readIds(value: unknown): bigint[] {
  return Array.isArray(value) ? value.map(readId) : [];
}

export function readInt(value: unknown): number {
  if (typeof value === 'number') return value;
  if (typeof value === 'bigint') return Number(value);
  return 0;
}

export function readString(value: unknown): string {
  if (typeof value === 'string') return value;
  if (value instanceof Uint8Array) return utf8.decode(value);
  if (value === undefined || value === null) return '';
  return String(value);
}

/** A map keyed by decimal id strings (or integers) → Map<bigint, T>. */
export function readIdMap<T>(value: unknown, read: (v: unknown) => T): Map<bigint, T> {
  const out = new Map<bigint, T>();
  if (value instanceof Map) {
    for (const [k, v] of value) out.set(readId(k), read(v));
  } else if (value && typeof value === 'object') {
    for (const [k, v] of Object.entries(value)) out.set(readId(k), read(v));
  }
  return out;
}

export interface ReadBody {
  message: MessageBody;
  translatedInfo?: TranslatedInfo;
}

/**
 * A message body. A chat push (mtype 30) carries a map {source, target, sourceText, targetText}:
 * the text is `targetText` if non-empty, else `sourceText` (client-api.md §7). Strings and bytes
 * pass through unchanged.
 */
export function readBody(value: unknown): ReadBody {
  if (typeof value === 'string' || value instanceof Uint8Array) return { message: value };
  if (value && typeof value === 'object' && !Array.isArray(value)) {
    const map = value instanceof Map ? Object.fromEntries(value) : (value as Record<string, unknown>);
    const info: TranslatedInfo = {
      source: readString(map.source),
      target: readString(map.target),
      sourceText: readString(map.sourceText),
      targetText: readString(map.targetText),
    };
    return { message: info.targetText !== '' ? info.targetText : info.sourceText, translatedInfo: info };
  }
  return { message: readString(value) };
}

/** One 8-element history row [id, from|direction, mtype, mid, deleted, msg, attrs, mtime]. */
export function readHistoryRow(row: unknown): HistoryMessage {
  const r = Array.isArray(row) ? row : [];
  const body = readBody(r[5]);
  const entry: HistoryMessage = {
    id: readId(r[0]),
    fromUid: readId(r[1]),
    mtype: readInt(r[2]),
    mid: readId(r[3]),
    deleted: r[4] === true || r[4] === 1,
    message: body.message,
    attrs: readString(r[6]),
    mtime: readId(r[7]),
  };
  if (body.translatedInfo) entry.translatedInfo = body.translatedInfo;
  return entry;
}

/** A p2p row: index 1 is the direction (1 = sent by me, 2 = sent by the peer). */
export function readP2PHistoryRow(row: unknown, me: bigint, peer: bigint): P2PHistoryMessage {
  const entry = readHistoryRow(row);
  const direction = Number(entry.fromUid);
  return { ...entry, direction, fromUid: direction === 1 ? me : peer };
}

export function readHistoryPage<M extends HistoryMessage>(answer: Payload, readRow: (row: unknown) => M): HistoryPage<M> {
  return {
    num: readInt(answer.num),
    lastid: readId(answer.lastid),
    begin: readId(answer.begin),
    end: readId(answer.end),
    messages: Array.isArray(answer.msgs) ? answer.msgs.map(readRow) : [],
  };
}

/** Parallel arrays `conversations`, `unreads`, `msgs` (client-api.md §3.3) → a list. */
export function readConversations<M extends HistoryMessage>(
  ids: unknown,
  unreads: unknown,
  msgs: unknown,
  readRow: (row: unknown, id: bigint) => M,
): Conversation<M>[] {
  const idList = readIds(ids);
  const unreadList = Array.isArray(unreads) ? unreads : [];
  const msgList = Array.isArray(msgs) ? msgs : [];
  return idList.map((id, i) => ({
    id,
    unread: readInt(unreadList[i]),
    lastMessage: Array.isArray(msgList[i]) ? readRow(msgList[i], id) : undefined,
  }));
}
