/**
 * JSON text with integers beyond 2^53 (spec/fpnn.md §2 JSON): read as `bigint`, `bigint` written
 * as a bare number. Its own module so that a bundle that speaks only msgpack (the client SDK's
 * browser bundle) can leave out json-bigint and bignumber.js, a quarter of its size: it is built
 * with json-text.browser.ts in place of this file.
 */
import JSONbig from 'json-bigint';

// JSON with integers beyond 2^53 parsed as bigint and bigint written as bare numbers (§2 JSON).
// Its pollution guard drops any key that contains `__proto__` or `constructor` (none is an RTM key).
// json-bigint reads every number literal longer than 15 characters as a big number; its native
// BigInt option (`useNativeBigInt`) calls BigInt(text), which throws on a fraction or an exponent,
// so a valid document (`1795315914246001.0` from Python's json.dumps(float), `0.30000000000000004`)
// was refused whole. It is left to make bignumber.js values instead, which `nativeNumbers` turns
// into an exact bigint when the value is integral and into a JS number otherwise.
const jsonBig = JSONbig({ protoAction: 'ignore', constructorAction: 'ignore' });

/** The part of a bignumber.js value that `nativeNumbers` uses (json-bigint makes them). */
interface BigNumberLike {
  readonly _isBigNumber: true;
  isInteger(): boolean;
  toFixed(): string;
  toNumber(): number;
}

function isBigNumber(value: object): value is BigNumberLike {
  return (value as { _isBigNumber?: unknown })._isBigNumber === true;
}

/**
 * Replaces, in place, the big numbers json-bigint made for its long number literals: an integral
 * value becomes an exact `bigint` (ids above 2^53, also when spelled `…001.0` or with an
 * exponent), any other a JS number (as a short literal would be; the schema layer then refuses it
 * where an integer is expected). Only literals over 15 characters can be big numbers, so a text
 * without a run that long is returned as parsed, without a walk.
 */
function nativeNumbers(value: unknown): unknown {
  if (value === null || typeof value !== 'object') return value;
  if (isBigNumber(value)) return value.isInteger() ? BigInt(value.toFixed()) : value.toNumber();
  if (Array.isArray(value)) {
    for (let i = 0; i < value.length; i++) value[i] = nativeNumbers(value[i]);
  } else {
    // json-bigint's objects have a null prototype: every key is its own.
    const map = value as Record<string, unknown>;
    for (const key in map) map[key] = nativeNumbers(map[key]);
  }
  return value;
}

const LONG_NUMBER = /[-+.\deE]{16}/;

/**
 * A `\u` escape without four hex digits after an odd run of backslashes. json-bigint stops at the
 * first non-hex digit and keeps what it read ("\u00zz" became U+0000 followed by "z"): refused.
 */
const BAD_U_ESCAPE = /(?:^|[^\\])(?:\\\\)*\\u(?![0-9a-fA-F]{4})/;
/** An escape that may spell half of a surrogate pair (D800–DFFF). */
const SURROGATE_ESCAPE = /\\u[dD][89a-fA-F]/;
const LONE_SURROGATE = /[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/g;

/**
 * JSON can spell a lone surrogate (`"\ud800"`), which no UTF-8 holds: left as is, it reached the
 * stores, which kept it differently (SQLite ill-formed bytes read back as three U+FFFD,
 * PostgreSQL one U+FFFD), so a resend no longer matched what was stored. Each becomes one U+FFFD,
 * as a msgpack str with bytes that are not UTF-8 does. Replaces in place, keys included.
 */
function wellFormedStrings(value: unknown): unknown {
  if (typeof value === 'string') return value.replace(LONE_SURROGATE, '\ufffd');
  if (value === null || typeof value !== 'object') return value;
  if (Array.isArray(value)) {
    for (let i = 0; i < value.length; i++) value[i] = wellFormedStrings(value[i]);
    return value;
  }
  const map = value as Record<string, unknown>;
  for (const key of Object.keys(map)) {
    const fixed = key.replace(LONE_SURROGATE, '\ufffd');
    const v = wellFormedStrings(map[key]);
    if (fixed !== key) delete map[key];
    map[fixed] = v;
  }
  return value;
}

/** Parses JSON text; throws a SyntaxError for what is not valid JSON (or not safely read). */
export function parseJsonText(text: string): unknown {
  const escapes = text.includes('\\u');
  if (escapes && BAD_U_ESCAPE.test(text)) throw new SyntaxError('bad \\u escape: it takes four hex digits');
  let value: unknown = jsonBig.parse(text);
  if (LONG_NUMBER.test(text)) value = nativeNumbers(value);
  return escapes && SURROGATE_ESCAPE.test(text) ? wellFormedStrings(value) : value;
}

/** JSON text of `value`, `bigint` as bare integers. */
export function stringifyJsonText(value: unknown, replacer?: (key: string, value: unknown) => unknown): string {
  return jsonBig.stringify(value, replacer as never);
}
