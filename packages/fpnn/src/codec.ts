import { Packr } from 'msgpackr';
import JSONbig from 'json-bigint';
import { FpnnErrorCode } from './codes.js';
import { RtmError } from './errors.js';
import { Flag, type PayloadFlag } from './frame.js';

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
const jsonBig = JSONbig({ useNativeBigInt: true, protoAction: 'ignore', constructorAction: 'ignore' });
const utf8 = new TextDecoder();
const utf8Encoder = new TextEncoder();

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
  let value: unknown;
  try {
    if (flag === Flag.MSGPACK) value = bytes.length === 0 ? {} : packr.unpack(bytes);
    else value = bytes.length === 0 ? {} : jsonBig.parse(utf8.decode(bytes));
  } catch (err) {
    const kind = flag === Flag.MSGPACK ? 'msgpack' : 'JSON';
    throw new RtmError(FpnnErrorCode.CORE_DECODING, `payload is not valid ${kind}: ${(err as Error).message}`);
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
  parse: (text: string): unknown => jsonBig.parse(text),
  stringify: (value: unknown): string => jsonBig.stringify(value, jsonReplacer),
};
