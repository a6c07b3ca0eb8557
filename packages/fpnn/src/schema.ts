import { FpnnErrorCode, RtmErrorCode } from './codes.js';
import { missingKeyError, RtmError } from './errors.js';
import type { Payload } from './codec.js';

/**
 * Declarative wire shapes. A method declares its fields once; `parse` validates a decoded payload
 * into a typed request, with the spec's codes: a missing key → 10009, a value of the wrong type →
 * 10010 (spec/fpnn.md §3). The coercions are the ones real SDKs need (spec/fpnn.md §2):
 * - ids: any msgpack int width, bigint, float64 holding an integer (msgpack-lite), decimal string (JSON);
 * - strings: str or bin; booleans: true/false or 0/1; nil = absent.
 */
export interface Field<T> {
  readonly optional: boolean;
  readonly describe: string;
  /** What a `positiveId` field (or each item of a list of them) names: such ids are > 0. */
  readonly names?: IdTarget;
  /** A `list` field's item. */
  readonly item?: Field<unknown>;
  read(value: unknown, key: string): T;
}

/** What an id names: a user, a group or a room. */
export type IdTarget = 'uid' | 'gid' | 'rid';

export type Infer<S extends Record<string, Field<unknown>>> = {
  [K in keyof S as S[K]['optional'] extends true ? never : K]: S[K] extends Field<infer T> ? T : never;
} & {
  [K in keyof S as S[K]['optional'] extends true ? K : never]?: S[K] extends Field<infer T> ? T : never;
};

const INT64_MIN = -(2n ** 63n);
const INT64_MAX = 2n ** 63n - 1n;
const UINT64_MAX = 2n ** 64n - 1n;
// ignoreBOM: a leading U+FEFF is text like any other (the default decoder drops it, so a string
// sent as bin lost it where the same string sent as str kept it).
const utf8 = new TextDecoder('utf-8', { fatal: false, ignoreBOM: true });

function typeName(value: unknown): string {
  if (value instanceof Uint8Array) return 'bin';
  if (Array.isArray(value)) return 'array';
  return typeof value;
}

function bad(key: string, want: string, value: unknown): RtmError {
  // An integer is named by its value: "got bigint" did not say what was wrong. Where an integer was
  // wanted, it was one of the wrong size; elsewhere it is the wrong type ("got integer 5").
  const integer = typeof value === 'bigint' || (typeof value === 'number' && Number.isInteger(value));
  const got = !integer ? typeName(value) : want.startsWith('an integer') ? `${value} (out of range)` : `integer ${value}`;
  return new RtmError(FpnnErrorCode.PROTO_TYPE_CONVERT, `key '${key}' must be ${want}, got ${got}`);
}

/**
 * Reads a 64-bit integer in any of its wire forms, signed or unsigned (a salt may be a uint64);
 * `undefined` if the value is not one.
 */
export function asInt64(value: unknown): bigint | undefined {
  let n: bigint;
  if (typeof value === 'bigint') n = value;
  else if (typeof value === 'number' && Number.isInteger(value)) n = BigInt(value);
  else if (typeof value === 'string' && /^-?\d{1,20}$/.test(value)) n = BigInt(value);
  else return undefined;
  return n >= INT64_MIN && n <= UINT64_MAX ? n : undefined;
}

function make<T>(describe: string, read: (value: unknown, key: string) => T): Field<T> & { optional: false } {
  return { optional: false, describe, read };
}

/** Ids are signed 64-bit (spec/fpnn.md §2): what a store keeps and an SDK reads back. */
export const id = make<bigint>('an integer id', (v, k) => {
  const n = asInt64(v);
  if (n === undefined || n > INT64_MAX) throw bad(k, 'an integer (int64)', v);
  return n;
});

/**
 * An id naming a user, group or room given as a method's input: > 0. No one can log in as a uid
 * ≤ 0 (`auth` answers 200001, spec/errors-and-limits.md §2), so what a method would store or push
 * for such an id would be kept for nobody: ≤ 0 is 200034 INVALID_PARAMETER, naming the key (and,
 * in a list, the index) and the value, e.g. "to must be > 0 (a uid), got 0". Other int64 keys
 * (mid, times, cursors, the ban scopes where ≤ 0 means "all") stay `id`.
 */
export function positiveId(names: IdTarget): Field<bigint> & { optional: false; names: IdTarget } {
  const field = make<bigint>(`a ${names} (an integer id > 0)`, (v, k) => {
    const n = id.read(v, k);
    if (n <= 0n) throw new RtmError(RtmErrorCode.INVALID_PARAMETER, `${k} must be > 0 (a ${names}), got ${n}`);
    return n;
  });
  return { ...field, names };
}

export const int = make<number>('an integer', (v, k) => {
  if (typeof v === 'number' && Number.isSafeInteger(v)) return v;
  if (typeof v === 'bigint' && v >= BigInt(Number.MIN_SAFE_INTEGER) && v <= BigInt(Number.MAX_SAFE_INTEGER)) return Number(v);
  if (typeof v === 'string' && /^-?\d{1,15}$/.test(v)) return Number(v);
  throw bad(k, 'an integer', v);
});

export const str = make<string>('a string', (v, k) => {
  if (typeof v === 'string') return v;
  if (v instanceof Uint8Array) return utf8.decode(v);
  throw bad(k, 'a string', v);
});

/** A message body: str or bin, kept as it came so it can be echoed in the same msgpack kind. */
export const body = make<string | Uint8Array>('a string or binary', (v, k) => {
  if (typeof v === 'string' || v instanceof Uint8Array) return v;
  throw bad(k, 'a string or binary', v);
});

export const bool = make<boolean>('a boolean', (v, k) => {
  if (typeof v === 'boolean') return v;
  // 0 / 1 in any integer form (fpnn.md §2): a 64-bit one decodes as a bigint.
  if (v === 0 || v === 1 || v === 0n || v === 1n) return v === 1 || v === 1n;
  throw bad(k, 'a boolean', v);
});

/** A list; each item is read as `item` under the key `<key>[<index>]`. */
export function list<T>(item: Field<T>): Field<T[]> & { optional: false } {
  const field = make<T[]>(`a list of ${item.describe}`, (v, k) => {
    if (!Array.isArray(v)) throw bad(k, `a list of ${item.describe}`, v);
    return v.map((x, i) => item.read(x, `${k}[${i}]`));
  });
  return item.names === undefined ? { ...field, item } : { ...field, item, names: item.names };
}

/**
 * A set: a list, as for `list`, or a map whose keys are the items and whose values are ignored.
 * The Go server SDK keeps its listen lists as `map[int64]struct{}` and sends them so when it
 * restores them on a reconnect: `{ 2002: {} }` (a map's int keys decode as decimal strings, which
 * ids accept). An item is read under `<key>.<map key>`.
 */
export function setOf<T>(item: Field<T>): Field<T[]> & { optional: false } {
  const asList = list(item);
  return {
    ...asList,
    describe: `${asList.describe} (or a map keyed by them)`,
    read(v, k) {
      if (v === null || typeof v !== 'object' || Array.isArray(v) || v instanceof Uint8Array) return asList.read(v, k);
      return Object.keys(v).map((x) => item.read(x, `${k}.${x}`));
    },
  };
}

/** A map of string keys to strings (connection attrs). */
export const strMap = make<Record<string, string>>('a map of strings', (v, k) => {
  if (v === null || typeof v !== 'object' || Array.isArray(v) || v instanceof Uint8Array) throw bad(k, 'a map of strings', v);
  const out: Record<string, string> = {};
  for (const [key, val] of Object.entries(v)) out[key] = str.read(val, `${k}.${key}`);
  return out;
});

/** Any value (kept as is). */
export const any = make<unknown>('any value', (v) => v);

export function optional<T>(field: Field<T>): Field<T> & { optional: true } {
  return { ...field, optional: true };
}

export type Schema = Record<string, Field<unknown>>;

/** Validates `payload` against `schema`; unknown keys are ignored (SDKs add their own, e.g. `version`). */
export function parse<S extends Schema>(schema: S, payload: Payload): Infer<S> {
  const out: Record<string, unknown> = {};
  for (const key in schema) {
    const field = schema[key]!;
    const value = Object.hasOwn(payload, key) ? payload[key] : undefined;
    if (value === undefined || value === null) {
      if (!field.optional) throw missingKeyError(key);
      continue;
    }
    out[key] = field.read(value, key);
  }
  return out as Infer<S>;
}
