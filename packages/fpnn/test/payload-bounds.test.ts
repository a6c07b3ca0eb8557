/**
 * The bounds on what one payload may make the decoder build (codec.ts MAX_PAYLOAD_OBJECTS, maps,
 * arrays and map entries; MAX_PAYLOAD_VALUES): a payload at a bound decodes, one over it is
 * refused, whatever values lie before (the msgpack scan must skip every kind exactly: a wrong
 * length would miscount all that follows).
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import {
  decodePayload,
  encodePayload,
  Flag,
  MAX_PAYLOAD_OBJECTS,
  MAX_PAYLOAD_VALUES,
  RtmError,
  type Payload,
  type PayloadFlag,
} from '@rtm/fpnn';

const leaf = fc.oneof(
  fc.integer(),
  fc.bigInt({ min: -(2n ** 63n), max: 2n ** 64n - 1n }),
  fc.double({ noNaN: true, noDefaultInfinity: true }),
  fc.string({ maxLength: 300 }),
  fc.boolean(),
  fc.constant(null),
  fc.uint8Array({ maxLength: 300 }).map((b) => new Uint8Array(b)),
  fc.date({ noInvalidDate: true }), // a msgpack timestamp: an ext type
);
const value = fc.letrec((tie) => ({
  value: fc.oneof({ depthSize: 'small' }, leaf, tie('array'), tie('map')),
  array: fc.array(tie('value'), { maxLength: 6 }),
  map: fc.dictionary(fc.string({ maxLength: 8 }), tie('value'), { maxKeys: 6 }),
}));

const isMap = (v: unknown): v is Record<string, unknown> =>
  v !== null && typeof v === 'object' && !Array.isArray(v) && !(v instanceof Uint8Array) && !(v instanceof Date);

/** Maps, arrays and map entries in `v`. */
function objects(v: unknown): number {
  if (Array.isArray(v)) return 1 + v.reduce((n: number, x) => n + objects(x), 0);
  if (isMap(v)) return 1 + Object.values(v).reduce((n: number, x) => n + 1 + objects(x), 0);
  return 0;
}

/** Values in `v`, map keys too. */
function values(v: unknown): number {
  if (Array.isArray(v)) return 1 + v.reduce((n: number, x) => n + values(x), 0);
  if (isMap(v)) return 1 + Object.values(v).reduce((n: number, x) => n + 1 + values(x), 0);
  return 1;
}

/** `{v, long, many}` with `many` filled with `fill` until `count` of the payload is `total`. */
function payloadOf(v: unknown, total: number, json: boolean, count: (v: unknown) => number, fill: () => unknown): Payload {
  // A str32 and a bin32 (msgpack) before the fill; JSON has no binary.
  const long = json ? 'x'.repeat(70_000) : ['x'.repeat(70_000), new Uint8Array(70_000)];
  const payload: Payload = { v, long, many: [] };
  (payload.many as unknown[]) = Array.from({ length: total - count(payload) }, fill);
  assert.equal(count(payload), total);
  return payload;
}

function refused(flag: PayloadFlag, bytes: Uint8Array): boolean {
  try {
    decodePayload(flag, bytes);
    return false;
  } catch (err) {
    assert.ok(err instanceof RtmError);
    assert.equal(err.code, flag === Flag.MSGPACK ? 20006 : 10004);
    assert.match(err.message, /more than (100000 maps, arrays and map entries|1000000 values)/);
    return true;
  }
}

const msgpack = (p: Payload): Uint8Array => encodePayload(Flag.MSGPACK, p);
const json = (p: Payload): Uint8Array => encodePayload(Flag.JSON, p);

describe('what one payload may make the decoder build', () => {
  it('msgpack: maps, arrays and entries at the bound decode, one more is refused, whatever comes first', () => {
    fc.assert(
      fc.property(value.value, (v) => {
        assert.equal(refused(Flag.MSGPACK, msgpack(payloadOf(v, MAX_PAYLOAD_OBJECTS, false, objects, () => []))), false);
        assert.equal(refused(Flag.MSGPACK, msgpack(payloadOf(v, MAX_PAYLOAD_OBJECTS + 1, false, objects, () => []))), true);
      }),
      { numRuns: 8 },
    );
    // One map of that many entries (with itself).
    const keys = Object.fromEntries(Array.from({ length: MAX_PAYLOAD_OBJECTS - 1 }, (_, i) => [`k${i}`, 0]));
    assert.equal(refused(Flag.MSGPACK, msgpack(keys)), false);
    assert.equal(refused(Flag.MSGPACK, msgpack({ ...keys, one: 1 })), true);
    // A map16 (40,000 entries) and arrays.
    const some = Object.fromEntries(Array.from({ length: 40_000 }, (_, i) => [`k${i}`, 0]));
    for (const [total, over] of [
      [MAX_PAYLOAD_OBJECTS, false],
      [MAX_PAYLOAD_OBJECTS + 1, true],
    ] as const) {
      const many = Array.from({ length: total - objects({ some, many: [] }) }, () => []);
      assert.equal(refused(Flag.MSGPACK, msgpack({ some, many })), over);
    }
  });

  it('msgpack: values at the bound decode, one more is refused', () => {
    fc.assert(
      fc.property(value.value, (v) => {
        assert.equal(refused(Flag.MSGPACK, msgpack(payloadOf(v, MAX_PAYLOAD_VALUES, false, values, () => null))), false);
        assert.equal(refused(Flag.MSGPACK, msgpack(payloadOf(v, MAX_PAYLOAD_VALUES + 1, false, values, () => null))), true);
      }),
      { numRuns: 2 },
    );
  });

  it('JSON: maps, arrays and entries at the bound decode, one more is refused; brackets inside strings are not counted', () => {
    const strings = { s: '[{:,'.repeat(60_000), e: '\\"[{:,'.repeat(1000) };
    assert.equal(refused(Flag.JSON, json(payloadOf(strings, MAX_PAYLOAD_OBJECTS, true, objects, () => []))), false);
    assert.equal(refused(Flag.JSON, json(payloadOf(strings, MAX_PAYLOAD_OBJECTS + 1, true, objects, () => []))), true);
  });

  it('JSON: about as many values as the bound decode, more are refused', () => {
    const zeros = (n: number): Uint8Array => new TextEncoder().encode(`{"x":[${'0,'.repeat(n - 1)}0]}`);
    assert.equal(refused(Flag.JSON, zeros(MAX_PAYLOAD_VALUES - 10)), false);
    assert.equal(refused(Flag.JSON, zeros(MAX_PAYLOAD_VALUES + 10)), true);
  });
});
