import { Packr, RESERVE_START_SPACE } from 'msgpackr';
import JSONbig from 'json-bigint';
import { FpnnErrorCode } from './codes.js';
import { RtmError } from './errors.js';
import {
  encodeAnswer,
  encodeQuest,
  Flag,
  HEADER_BYTES,
  MType,
  methodBytes,
  writeFrameHeader,
  type Frame,
  type PayloadFlag,
} from './frame.js';

/** A decoded payload: FPNN payloads are always maps with string keys. */
export type Payload = Record<string, unknown>;

/**
 * msgpack as the RTM SDKs speak it (spec/fpnn.md §2):
 * - 64-bit integers (0xcf / 0xd3) decode as `bigint`, smaller widths as `number`;
 *   `bigint` encodes as int64/uint64 so ids above 2^53 survive both ways;
 * - bin stays a byte array (copied, so it never pins a frame buffer), str stays a string;
 * - maps decode to plain objects; keys whose value is `undefined` are left out when encoding
 *   (msgpackr would otherwise write an ext type no SDK understands).
 */
const packr = new Packr({
  useRecords: false,
  mapsAsObjects: true,
  int64AsType: 'bigint',
  variableMapSize: true,
  copyBuffers: true,
  skipValues: [undefined],
  encodeUndefinedAsNil: true,
} as ConstructorParameters<typeof Packr>[0] & { skipValues: unknown[] });

// JSON with integers beyond 2^53 parsed as bigint and bigint written as bare numbers (§2 JSON).
// Its pollution guard drops any key that contains `__proto__` or `constructor` (none is an RTM key).
// json-bigint reads every number literal longer than 15 characters as a big number; its native
// BigInt option (`useNativeBigInt`) calls BigInt(text), which throws on a fraction or an exponent,
// so a valid document (`1795315914246001.0` from Python's json.dumps(float), `0.30000000000000004`)
// was refused whole. It is left to make bignumber.js values instead, which `nativeNumbers` turns
// into an exact bigint when the value is integral and into a JS number otherwise.
const jsonBig = JSONbig({ protoAction: 'ignore', constructorAction: 'ignore' });
const utf8 = new TextDecoder();
const utf8Encoder = new TextEncoder();

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

function parseJson(text: string): unknown {
  const escapes = text.includes('\\u');
  if (escapes && BAD_U_ESCAPE.test(text)) throw new SyntaxError('bad \\u escape: it takes four hex digits');
  let value: unknown = jsonBig.parse(text);
  if (LONG_NUMBER.test(text)) value = nativeNumbers(value);
  return escapes && SURROGATE_ESCAPE.test(text) ? wellFormedStrings(value) : value;
}

export function encodeMsgpack(value: unknown): Uint8Array {
  return packr.pack(value);
}

export function decodeMsgpack(bytes: Uint8Array): unknown {
  return packr.unpack(bytes);
}

function jsonReplacer(_key: string, value: unknown): unknown {
  // Binary bodies have no JSON form: send their UTF-8 reading (the HTTP bridge is JSON only).
  if (value instanceof Uint8Array) return utf8.decode(value);
  return value;
}

export function encodePayload(flag: PayloadFlag, payload: Payload): Uint8Array {
  if (flag === Flag.MSGPACK) return packr.pack(payload);
  return utf8Encoder.encode(jsonBig.stringify(payload, jsonReplacer));
}

/** Decodes a payload; anything that is not a map is an error answer, never a throw of another kind. */
export function decodePayload(flag: PayloadFlag, bytes: Uint8Array): Payload {
  return decodeRange(flag, bytes, 0, bytes.length);
}

/** Decodes a frame's payload where it lies in the received bytes (no intermediate view). */
export function decodeFramePayload(frame: Frame): Payload {
  const f = frame as Frame & { source?: Uint8Array; payloadStart?: number; payloadEnd?: number };
  if (f.source !== undefined) return decodeRange(f.flag, f.source, f.payloadStart!, f.payloadEnd!);
  return decodeRange(frame.flag, frame.payload, 0, frame.payload.length);
}

function decodeRange(flag: PayloadFlag, source: Uint8Array, start: number, end: number): Payload {
  let value: unknown;
  try {
    if (start === end) value = {};
    else if (flag === Flag.MSGPACK) value = packr.unpack(source, { start, end } as never);
    else value = parseJson(utf8.decode(source.subarray(start, end)));
  } catch (err) {
    // Bad JSON is 10004 PROTO_JSON_CONVERT, as the HTTP bridge answers a bad body (errors-and-limits.md §1).
    if (flag === Flag.JSON) throw new RtmError(FpnnErrorCode.PROTO_JSON_CONVERT, `payload is not valid JSON: ${(err as Error).message}`);
    throw new RtmError(FpnnErrorCode.CORE_DECODING, `payload is not valid msgpack: ${(err as Error).message}`);
  }
  // Only a plain map: msgpackr also yields Dates (timestamp ext), arrays, buffers and a `C1Type`
  // object for the never-used byte 0xc1, none of which is a payload.
  const proto = value !== null && typeof value === 'object' ? Object.getPrototypeOf(value) : undefined;
  if (proto !== Object.prototype && proto !== null) {
    throw new RtmError(FpnnErrorCode.PROTO_INVALID_PACKAGE, 'payload must be a map at top level');
  }
  return value as Payload;
}

/** JSON text with bigint support, for the HTTP bridge. */
export const json = {
  parse: parseJson,
  stringify: (value: unknown): string => jsonBig.stringify(value, jsonReplacer),
};

/**
 * A whole quest frame from a payload map. For msgpack the payload is packed straight after room
 * reserved for the header and method (msgpackr RESERVE_START_SPACE): no second buffer and no copy,
 * which is most of what framing costs on small messages.
 */
export function encodeQuestFrame(method: string, payload: Payload, flag: PayloadFlag = Flag.MSGPACK, oneway = false, seq = 0): Uint8Array {
  const name = methodBytes(method);
  const head = HEADER_BYTES + (oneway ? 0 : 4) + name.length;
  if (flag !== Flag.MSGPACK || head > 255) return encodeQuest(method, encodePayload(flag, payload), flag, oneway, seq);
  const out = packr.pack(payload, RESERVE_START_SPACE | head) as Uint8Array;
  writeFrameHeader(out, flag, oneway ? MType.ONEWAY : MType.TWOWAY, name.length, out.length - head, oneway ? undefined : seq);
  out.set(name, head - name.length);
  return out;
}

/** A whole answer frame from a payload map (msgpack: packed in place, as encodeQuestFrame). */
export function encodeAnswerFrame(seq: number, payload: Payload, flag: PayloadFlag = Flag.MSGPACK, ok = true): Uint8Array {
  if (flag !== Flag.MSGPACK) return encodeAnswer(seq, encodePayload(flag, payload), flag, ok);
  const out = packr.pack(payload, RESERVE_START_SPACE | 16) as Uint8Array;
  writeFrameHeader(out, flag, MType.ANSWER, ok ? 0 : 1, out.length - 16, seq);
  return out;
}
