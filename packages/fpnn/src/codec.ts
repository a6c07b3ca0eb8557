import { addExtension, Packr, RESERVE_START_SPACE } from 'msgpackr';
import { FpnnErrorCode } from './codes.js';
import { RtmError } from './errors.js';
import { parseJsonText, stringifyJsonText } from './json-text.js';
import { newHead, readHead } from './msgpack-heads.js';
import { StrBytes, strBytesAt, strBytesOfRows, isUtf8 } from './str-bytes.js';
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

/**
 * A StrBytes is written as a str with its bytes (msgpackr would write any other Uint8Array as bin).
 * The extension's type is never written (`pack` writes the str itself and returns nothing) and
 * never read: an ext of that type in a payload stays an error, as any unknown ext is.
 */
addExtension({
  Class: StrBytes,
  type: 0x53,
  pack(value: StrBytes, allocate: (bytes: number) => { target: Uint8Array; position: number }): undefined {
    const n = value.byteLength;
    const head = n < 0x20 ? 1 : n < 0x100 ? 2 : n < 0x10000 ? 3 : 5;
    const { target, position } = allocate(head + n);
    if (n < 0x20) target[position] = 0xa0 | n;
    else if (n < 0x100) target.set([0xd9, n], position);
    else if (n < 0x10000) target.set([0xda, n >> 8, n & 0xff], position);
    else target.set([0xdb, n >>> 24, (n >> 16) & 0xff, (n >> 8) & 0xff, n & 0xff], position);
    target.set(value, position + head);
    return undefined;
  },
  unpack(): never {
    throw new Error('Unknown extension type 83');
  },
} as never);

const utf8 = new TextDecoder();
const utf8Encoder = new TextEncoder();

/**
 * What one payload may make the decoder build. Decoding makes a JS object per map or array and a
 * property per map entry, one byte each at the least: 7 MB of `{}` took 3.7 s of event loop and
 * 450 MB of heap, a map of a million keys 2.2 s, before anything (a login, a signature) says who
 * sent it. Scalars cost less but add up: 4 M JSON zeros took 1.9 s. No RTM payload comes near
 * these bounds (a page of 1,000 messages holds ~20,000 entries; a `setlisten` of 100,000 uids, the
 * default RTM_MAX_LISTEN_ITEMS, 100,000 values); one over either is refused as undecodable, after
 * a scan of its bytes that allocates nothing per value. A payload of fewer bytes than MAX_PAYLOAD_OBJECTS
 * cannot hold more of either, so it is not scanned: the usual quest costs nothing.
 */
export const MAX_PAYLOAD_OBJECTS = 100_000;
/** Values of every kind (map keys too) one payload may hold; see MAX_PAYLOAD_OBJECTS. */
export const MAX_PAYLOAD_VALUES = 1_000_000;

/**
 * Why a msgpack payload is over the bounds, or undefined. Lengths are explicit in msgpack, so one
 * walk over the values in order finds them all: a map or array header is followed by its elements,
 * any other value is skipped whole. Bytes past `end` (a length that lies) end the walk; the
 * decoder refuses them.
 */
function msgpackOverBounds(b: Uint8Array, at: number, end: number): string | undefined {
  let objects = 0;
  let values = 0;
  const head = newHead();
  while (at < end) {
    if (++values > MAX_PAYLOAD_VALUES) return tooManyValues;
    readHead(b, at, head);
    at = head.next;
    // A map or an array is one object; a map's keys are objects too.
    const entries = head.mapEntries >= 0 ? head.mapEntries : head.arrayItems >= 0 ? 0 : -1;
    if (entries >= 0 && (objects += 1 + entries) > MAX_PAYLOAD_OBJECTS) return tooManyObjects;
  }
  return undefined;
}

/**
 * Why a JSON text is over the bounds, or undefined. Outside strings, `{` and `[` open a map or an
 * array and `:` ends a map key (objects); a value is one of those or follows a `,` (about).
 */
function jsonOverBounds(text: string): string | undefined {
  let objects = 0;
  let values = 0;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c === 0x7b /* { */ || c === 0x5b /* [ */ || c === 0x3a /* : */) {
      if (++objects > MAX_PAYLOAD_OBJECTS) return tooManyObjects;
      if (++values > MAX_PAYLOAD_VALUES) return tooManyValues;
    } else if (c === 0x2c /* , */) {
      if (++values > MAX_PAYLOAD_VALUES) return tooManyValues;
    } else if (c === 0x22 /* " */) {
      // To the closing quote, past escaped characters.
      for (i++; i < text.length; i++) {
        const d = text.charCodeAt(i);
        if (d === 0x5c /* \\ */) i++;
        else if (d === 0x22) break;
      }
    }
  }
  return undefined;
}

const tooManyObjects = `more than ${MAX_PAYLOAD_OBJECTS} maps, arrays and map entries`;
const tooManyValues = `more than ${MAX_PAYLOAD_VALUES} values`;

function parseJson(text: string): unknown {
  const over = text.length > MAX_PAYLOAD_OBJECTS ? jsonOverBounds(text) : undefined;
  if (over) throw new SyntaxError(over);
  return parseJsonText(text);
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
  return utf8Encoder.encode(stringifyJsonText(payload, jsonReplacer));
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
    else if (flag === Flag.MSGPACK) {
      const over = end - start > MAX_PAYLOAD_OBJECTS ? msgpackOverBounds(source, start, end) : undefined;
      if (over) throw new Error(over);
      value = packr.unpack(source, { start, end } as never);
      keepStrAt(value, source, start, end, BODY_PATH);
      keepRowBodies(value, source, start, end);
    } else value = parseJson(utf8.decode(source.subarray(start, end)));
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

/**
 * Where a quest's or push's message body is: `msg` at the top of the payload. Sent as a str of
 * bytes that are not UTF-8, it becomes their StrBytes, not a string of U+FFFD (str-bytes.ts).
 */
const BODY_PATH = ['msg'] as const;

/**
 * `decodeMsgpack` keeping the str at `path` (map keys, outermost first) as its StrBytes when its
 * bytes are not UTF-8 (str-bytes.ts): for bodies deeper than a payload's top, as in bus events.
 */
export function decodeMsgpackKeeping(bytes: Uint8Array, path: readonly string[]): unknown {
  const value = packr.unpack(bytes);
  keepStrAt(value, bytes, 0, bytes.length, path);
  return value;
}

/**
 * Puts the StrBytes of the str at `path` in `value` (decoded from `source[start, end)`) when its
 * bytes are not UTF-8. Only a string that holds U+FFFD can be one: the usual value costs a
 * property read per key of the path.
 */
function keepStrAt(value: unknown, source: Uint8Array, start: number, end: number, path: readonly string[]): void {
  let parent = value as Payload | null | undefined;
  for (let i = 0; i < path.length - 1; i++) parent = parent?.[path[i]!] as Payload | null | undefined;
  const last = path[path.length - 1]!;
  const s = parent?.[last];
  if (typeof s !== 'string' || !s.includes('\uFFFD')) return;
  const bytes = strBytesAt(source, start, end, path);
  if (bytes && !isUtf8(bytes)) parent![last] = StrBytes.view(bytes.slice());
}

/**
 * The same for the bodies of history entries, `msgs[i][5]` (the answers of the history methods and
 * of the conversation lists): read by our SDKs, which pass a StrBytes on as the binary body it is.
 * Only rows whose body holds U+FFFD are looked for in the bytes.
 */
function keepRowBodies(value: unknown, source: Uint8Array, start: number, end: number): void {
  const rows = (value as Payload | null | undefined)?.msgs;
  if (!Array.isArray(rows)) return;
  const suspect = (row: unknown): row is unknown[] => Array.isArray(row) && typeof row[5] === 'string' && row[5].includes('\uFFFD');
  if (!rows.some(suspect)) return;
  const bodies = strBytesOfRows(source, start, end, 'msgs', 5);
  rows.forEach((row, i) => {
    const bytes = bodies?.[i];
    if (bytes && suspect(row) && !isUtf8(bytes)) row[5] = StrBytes.view(bytes.slice());
  });
}

/** JSON text with bigint support, for the HTTP bridge. */
export const json = {
  parse: parseJson,
  stringify: (value: unknown): string => stringifyJsonText(value, jsonReplacer),
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
