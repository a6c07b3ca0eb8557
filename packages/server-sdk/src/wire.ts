import { asInt64, FpnnErrorCode, RtmErrorCode, RtmError, type Payload } from '@rtm/fpnn';

/** A 64-bit id or timestamp as callers may pass it. Numbers must be safe integers. */
export type Id = bigint | number;

const INT64_MIN = -(2n ** 63n);
const INT64_MAX = 2n ** 63n - 1n;

/** Normalises a caller's id to bigint; rejects anything that would lose precision. */
export function toId(value: Id, name: string): bigint {
  if (typeof value === 'bigint') {
    if (value < INT64_MIN || value > INT64_MAX) throw invalid(name, 'must be a signed 64-bit integer (int64), as the server reads ids');
    return value;
  }
  if (typeof value === 'number' && Number.isSafeInteger(value)) return BigInt(value);
  throw invalid(name, `must be a bigint or a safe integer, got ${typeof value === 'number' ? value : typeof value}`);
}

export function toIds(values: readonly Id[], name: string): bigint[] {
  if (!Array.isArray(values)) throw invalid(name, 'must be an array of ids');
  return values.map((v, i) => toId(v, `${name}[${i}]`));
}

/** A list of small integers (`mtypes`); undefined stays undefined. */
export function toInts(values: readonly number[] | undefined, name: string): number[] | undefined {
  if (values === undefined || values === null) return undefined;
  if (!Array.isArray(values)) throw invalid(name, 'must be an array of integers');
  return values.map((v, i) => toInt(v, `${name}[${i}]`));
}

/** A small integer parameter (mtype, num, btime, type). */
export function toInt(value: number, name: string): number {
  if (typeof value !== 'number' || !Number.isSafeInteger(value)) throw invalid(name, `must be an integer, got ${String(value)}`);
  return value;
}

function invalid(name: string, why: string): RtmError {
  return new RtmError(RtmErrorCode.INVALID_PARAMETER, `${name} ${why}`);
}

// ---- reading answers and pushes: anything malformed is 20009 (SDKs use it for answers that lack keys) ----

function malformed(where: string, key: string, why: string): RtmError {
  return new RtmError(FpnnErrorCode.CORE_INVALID_PACKAGE, `${where}: '${key}' ${why}`);
}

const utf8 = new TextDecoder();

export function has(payload: Payload, key: string): boolean {
  return payload[key] !== undefined && payload[key] !== null;
}

export function readId(payload: Payload, key: string, where: string): bigint {
  const value = payload[key];
  if (value === undefined || value === null) throw malformed(where, key, 'is missing');
  return idValue(value, key, where);
}

export function idValue(value: unknown, key: string, where: string): bigint {
  // asInt64 accepts every integer width, integral floats (msgpack-lite senders) and decimal strings.
  const n = asInt64(value);
  if (n === undefined) throw malformed(where, key, 'is not an integer');
  return n;
}

export function readInt(payload: Payload, key: string, where: string): number {
  const value = payload[key];
  if (value === undefined || value === null) throw malformed(where, key, 'is missing');
  return intValue(value, key, where);
}

export function intValue(value: unknown, key: string, where: string): number {
  if (typeof value === 'number' && Number.isInteger(value)) return value;
  if (typeof value === 'bigint' && value >= BigInt(Number.MIN_SAFE_INTEGER) && value <= BigInt(Number.MAX_SAFE_INTEGER))
    return Number(value);
  throw malformed(where, key, 'is not a small integer');
}

export function readString(payload: Payload, key: string, where: string): string {
  const value = payload[key];
  if (value === undefined || value === null) throw malformed(where, key, 'is missing');
  return stringValue(value, key, where);
}

export function stringValue(value: unknown, key: string, where: string): string {
  if (typeof value === 'string') return value;
  if (value instanceof Uint8Array) return utf8.decode(value);
  throw malformed(where, key, 'is not a string');
}

/** A message body: kept as received, str → string, bin → Uint8Array. */
export function bodyValue(value: unknown, key: string, where: string): string | Uint8Array {
  if (typeof value === 'string') return value;
  if (value instanceof Uint8Array) {
    // msgpackr hands out node Buffers (already copied out of the frame): expose a plain Uint8Array view.
    return value.constructor === Uint8Array ? value : new Uint8Array(value.buffer, value.byteOffset, value.byteLength);
  }
  throw malformed(where, key, 'is not a string or binary');
}

export function readBool(payload: Payload, key: string, where: string): boolean {
  const value = payload[key];
  if (typeof value === 'boolean') return value;
  if (value === 0 || value === 1) return value === 1;
  throw malformed(where, key, value === undefined || value === null ? 'is missing' : 'is not a boolean');
}

export function readIdList(payload: Payload, key: string, where: string): bigint[] {
  const value = payload[key];
  if (value === undefined || value === null) throw malformed(where, key, 'is missing');
  if (!Array.isArray(value)) throw malformed(where, key, 'is not a list');
  return value.map((v, i) => idValue(v, `${key}[${i}]`, where));
}

/** A map keyed by the decimal text of ids (`getroomcount`, `getuseropeninfo`). */
export function readIdKeyedMap<T>(payload: Payload, key: string, where: string, read: (value: unknown, key: string) => T): Map<bigint, T> {
  const value = payload[key];
  if (value === undefined || value === null) throw malformed(where, key, 'is missing');
  if (typeof value !== 'object' || Array.isArray(value) || value instanceof Uint8Array) throw malformed(where, key, 'is not a map');
  const out = new Map<bigint, T>();
  for (const [k, v] of Object.entries(value)) out.set(idValue(k, `${key} key`, where), read(v, `${key}.${k}`));
  return out;
}
