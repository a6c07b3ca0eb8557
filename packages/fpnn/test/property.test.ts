/**
 * Property tests (fast-check): frames round-trip whatever the payload and however the stream is
 * cut, and hostile bytes only ever produce the two protocol error kinds, with bounded buffering.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import {
  decodePayload,
  encodeAnswer,
  encodePayload,
  encodeQuest,
  Flag,
  FpnnProtocolError,
  FrameDecoder,
  RtmError,
  StrBytes,
  decodeMsgpackKeeping,
  encodeMsgpack,
  type Frame,
  type Payload,
  type PayloadFlag,
} from '@rtm/fpnn';
import { PackageCipher, StreamCipher } from '@rtm/fpnn/crypto';

const INT64_MIN = -(2n ** 63n);
const UINT64_MAX = 2n ** 64n - 1n;

// `__proto__` is excluded: msgpackr deliberately renames it on decode (no prototype pollution),
// so it cannot round-trip; the hostile-input properties below cover it.
const key = fc.string({ maxLength: 12 }).filter((k) => k !== '__proto__');
const msgpackLeaf = fc.oneof(
  fc.integer(),
  fc.bigInt({ min: INT64_MIN, max: UINT64_MAX }),
  fc.double().filter((x) => !Object.is(x, -0)),
  fc.string({ maxLength: 40 }),
  fc.string({ unit: 'binary', maxLength: 20 }),
  fc.boolean(),
  fc.constant(null),
  fc.uint8Array({ maxLength: 64 }).map((b) => new Uint8Array(b)),
);
const msgpackValue = fc.letrec((tie) => ({
  value: fc.oneof({ depthSize: 'small', withCrossShrink: true }, msgpackLeaf, tie('array'), tie('map')),
  array: fc.array(tie('value'), { maxLength: 6 }),
  map: fc.dictionary(key, tie('value'), { maxKeys: 6 }),
}));
const msgpackPayload = fc.dictionary(key, msgpackValue.value, { maxKeys: 10 }) as fc.Arbitrary<Payload>;

// JSON has no bin and no non-finite floats; integers of any int64 size come back exact, and
// non-integral numbers as the same double (long spellings such as 0.30000000000000004 too).
const jsonLeaf = fc.oneof(
  fc.integer(),
  fc.bigInt({ min: INT64_MIN, max: UINT64_MAX }).filter((n) => n > 2n ** 53n || n < -(2n ** 53n)),
  fc.double({ noNaN: true, noDefaultInfinity: true }).filter((x) => !Number.isInteger(x)),
  fc.string({ maxLength: 40 }),
  fc.boolean(),
  fc.constant(null),
);
// json-bigint drops every key that merely contains `__proto__` or `constructor` (its guard against
// prototype pollution), so such keys cannot round-trip through JSON.
const jsonKey = key.filter((k) => !k.includes('__proto__') && !k.includes('constructor'));
const jsonValue = fc.letrec((tie) => ({
  value: fc.oneof({ depthSize: 'small' }, jsonLeaf, tie('array'), tie('map')),
  array: fc.array(tie('value'), { maxLength: 6 }),
  map: fc.dictionary(jsonKey, tie('value'), { maxKeys: 6 }),
}));
const jsonPayload = fc.dictionary(jsonKey, jsonValue.value, { maxKeys: 10 }) as fc.Arbitrary<Payload>;

const method = fc.string({ minLength: 1, maxLength: 80, unit: 'grapheme' }).filter((m) => Buffer.byteLength(m) <= 255);

interface FrameSpec {
  kind: 'oneway' | 'twoway' | 'answer';
  flag: PayloadFlag;
  method: string;
  seq: number;
  ok: boolean;
  payload: Payload;
}

const frameSpec: fc.Arbitrary<FrameSpec> = fc
  .record({
    kind: fc.constantFrom('oneway' as const, 'twoway' as const, 'answer' as const),
    json: fc.boolean(),
    method,
    seq: fc.integer({ min: 0, max: 0xffffffff }),
    ok: fc.boolean(),
  })
  .chain(({ json, ...rest }) =>
    (json ? jsonPayload : msgpackPayload).map((payload) => ({ ...rest, flag: json ? Flag.JSON : Flag.MSGPACK, payload }) as FrameSpec),
  );

function encode(spec: FrameSpec): Uint8Array {
  const bytes = encodePayload(spec.flag, spec.payload);
  return spec.kind === 'answer'
    ? encodeAnswer(spec.seq, bytes, spec.flag, spec.ok)
    : encodeQuest(spec.method, bytes, spec.flag, spec.kind === 'oneway', spec.seq);
}

/** Plain-object form for deepEqual (JSON decodes maps with a null prototype, msgpack bin as Buffer). */
function plain(value: unknown): unknown {
  if (value instanceof Uint8Array) return { bin: [...value] };
  if (Array.isArray(value)) return value.map(plain);
  if (value && typeof value === 'object') return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, plain(v)]));
  return value;
}

function cutAt(bytes: Uint8Array, cuts: number[]): Uint8Array[] {
  const points = [...new Set(cuts.map((c) => c % (bytes.length + 1)))].sort((a, b) => a - b);
  const chunks: Uint8Array[] = [];
  let from = 0;
  for (const p of points) {
    chunks.push(bytes.subarray(from, p));
    from = p;
  }
  chunks.push(bytes.subarray(from));
  return chunks;
}

describe('property: frames round-trip', () => {
  it('random frames encode → decode identically, split at random points', () => {
    fc.assert(
      fc.property(fc.array(frameSpec, { minLength: 1, maxLength: 6 }), fc.array(fc.nat(), { maxLength: 12 }), (specs, cuts) => {
        const stream = new Uint8Array(Buffer.concat(specs.map(encode)));
        const decoder = new FrameDecoder();
        const frames: Frame[] = [];
        for (const chunk of cutAt(stream, cuts)) frames.push(...decoder.push(chunk));
        assert.equal(frames.length, specs.length);
        assert.equal(decoder.bufferedBytes, 0);
        specs.forEach((spec, i) => {
          const f = frames[i]!;
          assert.equal(f.flag, spec.flag);
          if (spec.kind === 'answer') {
            assert.equal(f.kind, 'answer');
            assert.equal(f.kind === 'answer' && f.ok, spec.ok);
            assert.equal(f.seq, spec.seq);
          } else {
            assert.equal(f.kind, 'quest');
            assert.equal(f.kind === 'quest' && f.method, spec.method);
            assert.equal(f.kind === 'quest' && f.oneway, spec.kind === 'oneway');
            assert.equal(f.seq, spec.kind === 'oneway' ? 0 : spec.seq);
          }
          assert.deepEqual(plain(decodePayload(f.flag, f.payload)), plain(spec.payload));
        });
      }),
      { numRuns: 300 },
    );
  });

  it('random frames survive package and stream encryption split at random points', () => {
    fc.assert(
      fc.property(
        fc.array(frameSpec, { minLength: 1, maxLength: 4 }),
        fc.array(fc.nat(), { maxLength: 8 }),
        fc.boolean(),
        fc.uint8Array({ minLength: 16, maxLength: 16 }),
        (specs, cuts, stream, secret) => {
          const iv = secret.slice().reverse();
          const tx = stream ? new StreamCipher(secret, iv) : new PackageCipher(secret, iv);
          const rx = stream ? new StreamCipher(secret, iv) : new PackageCipher(secret, iv);
          const plainFrames = specs.map(encode);
          const wire = new Uint8Array(Buffer.concat(plainFrames.map((f) => tx.encrypt(f))));
          const decoder = new FrameDecoder();
          const got: Frame[] = [];
          for (const chunk of cutAt(wire, cuts)) for (const p of rx.decrypt(chunk)) got.push(...decoder.push(p));
          assert.equal(got.length, specs.length);
          got.forEach((f, i) => assert.deepEqual(plain(decodePayload(f.flag, f.payload)), plain(specs[i]!.payload)));
        },
      ),
      { numRuns: 100 },
    );
  });
});

/** Feeds chunks to a decoder, decoding every payload; only the two protocol error kinds may escape. */
function feedHostile(chunks: Uint8Array[], maxFrameBytes: number): { frames: number; error?: string } {
  const decoder = new FrameDecoder(maxFrameBytes);
  let frames = 0;
  for (const chunk of chunks) {
    let out: Frame[];
    try {
      out = decoder.push(chunk);
    } catch (err) {
      if (err instanceof FpnnProtocolError) return { frames, error: 'protocol' };
      throw err;
    }
    // Bounded: whatever stays buffered is less than one maximal frame (or a header's worth).
    assert.ok(decoder.bufferedBytes < Math.max(maxFrameBytes, 12), `buffered ${decoder.bufferedBytes}`);
    for (const f of out) {
      frames++;
      try {
        const payload = decodePayload(f.flag, f.payload);
        const proto = Object.getPrototypeOf(payload);
        assert.ok(proto === Object.prototype || proto === null, 'payload is a plain map');
      } catch (err) {
        if (!(err instanceof RtmError)) throw err;
        // 10003 not a map, 10004 not JSON, 20006 not msgpack.
        assert.ok(
          err.code === 10003 || (err.code === 10004 && f.flag === Flag.JSON) || (err.code === 20006 && f.flag === Flag.MSGPACK),
          `payload error code ${err.code}`,
        );
      }
    }
  }
  return { frames };
}

const golden = (): Uint8Array =>
  new Uint8Array(
    Buffer.concat([
      encodeQuest('sendmsg', encodePayload(Flag.MSGPACK, { from: 1001n, mid: 2n ** 60n, msg: 'x', attrs: '' }), Flag.MSGPACK, false, 1),
      encodeAnswer(2, encodePayload(Flag.JSON, { mtime: 1795315974345n, list: [1, 2] }), Flag.JSON),
      encodeQuest('kickout', encodePayload(Flag.MSGPACK, { a: [1, { b: new Uint8Array(3) }] }), Flag.MSGPACK, true),
    ]),
  );

describe('property: a str body keeps its bytes, UTF-8 or not (the Go SDK sends binary bodies as str)', () => {
  /** A msgpack map whose `msg` is a str of exactly these bytes (header chosen by length), among other keys. */
  const payloadWithStr = (bytes: Uint8Array, before: Payload, after: Payload): Uint8Array => {
    const n = bytes.length;
    const head = n < 0x20 ? [0xa0 | n] : n < 0x100 ? [0xd9, n] : [0xda, n >> 8, n & 0xff];
    const inner = (p: Payload) => encodeMsgpack(p).subarray(1); // the entries of a fixmap, without its header
    const count = Object.keys(before).length + 1 + Object.keys(after).length;
    return new Uint8Array([0x80 | count, ...inner(before), 0xa3, 0x6d, 0x73, 0x67, ...head, ...bytes, ...inner(after)]);
  };
  const sameBytes = (a: Uint8Array, b: Uint8Array) => Buffer.compare(Buffer.from(a), Buffer.from(b)) === 0;
  const strictUtf8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });
  /** The string the bytes spell if they are UTF-8, else undefined (what a str of them must decode to). */
  const utf8Text = (bytes: Uint8Array): string | undefined => {
    try {
      return strictUtf8.decode(bytes);
    } catch {
      return undefined;
    }
  };
  const entries = fc.dictionary(
    fc.string({ minLength: 1, maxLength: 4 }).filter((k) => k !== 'msg'),
    fc.oneof(fc.integer(), fc.string(), fc.constant(null)),
    { maxKeys: 3 },
  );

  it('decode → encode gives back the same bytes, as a str; UTF-8 bytes decode to the same string as before', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 300 }), entries, entries, (bytes, before, after) => {
        const after2 = Object.fromEntries(Object.entries(after).filter(([k]) => !(k in before)));
        const payload = decodePayload(Flag.MSGPACK, payloadWithStr(bytes, before, after2));
        const msg = payload['msg'];
        const utf8 = utf8Text(bytes);
        if (utf8 !== undefined) assert.equal(msg, utf8, 'UTF-8 bytes (U+FFFD itself included) read as their string');
        else {
          assert.ok(msg instanceof StrBytes, 'other bytes are kept as a StrBytes');
          assert.ok(sameBytes(msg, bytes));
        }
        const again = encodeMsgpack({ msg });
        assert.ok(sameBytes(again, payloadWithStr(bytes, {}, {})), 'encoded back as the same str');
      }),
      { numRuns: 500 },
    );
  });

  it('history rows keep their bodies too (msgs[i][5]): str bytes that are not UTF-8 as a StrBytes, bins as bins', () => {
    const body = fc.oneof(
      fc.uint8Array({ maxLength: 40 }).map((b) => ({ sent: StrBytes.view(b) as Uint8Array | string, bytes: b, bin: false })),
      fc.uint8Array({ maxLength: 40 }).map((b) => ({ sent: b as Uint8Array | string, bytes: b, bin: true })),
      fc.string({ maxLength: 20 }).map((t) => ({ sent: t as Uint8Array | string, bytes: new TextEncoder().encode(t), bin: false })),
    );
    const row = fc.tuple(fc.bigInt({ min: 1n, max: 2n ** 62n }), body, fc.string({ maxLength: 5 }));
    fc.assert(
      fc.property(fc.array(row, { maxLength: 12 }), fc.boolean(), (rows, oddRow) => {
        const msgs: unknown[] = rows.map(([id, b, attrs]) => [id, 1, 30, id, false, b.sent, attrs, id]);
        if (oddRow) msgs.push('not a row'); // rows are skipped, never misread, when not arrays
        const decoded = decodePayload(Flag.MSGPACK, encodeMsgpack({ num: rows.length, msgs, lastid: 5n, after: 'x' }));
        const got = decoded['msgs'] as unknown[][];
        rows.forEach(([, b], i) => {
          const msg = got[i]![5];
          if (b.bin) assert.ok(msg instanceof Uint8Array && !(msg instanceof StrBytes) && sameBytes(msg, b.bytes), 'a bin stays a bin');
          else {
            const text = utf8Text(b.bytes);
            if (text !== undefined) assert.equal(msg, text);
            else assert.ok(msg instanceof StrBytes && sameBytes(msg, b.bytes), 'other bytes are kept as a StrBytes');
          }
        });
        assert.equal(decoded['after'], 'x');
      }),
      { numRuns: 300 },
    );
  });

  it('a key given twice counts as its last occurrence, as the decoder reads it', () => {
    const first = new Uint8Array([0xff, 0xfe]);
    const last = new Uint8Array([0xc3, 0x28, 0x00]);
    const twice = new Uint8Array([0x82, 0xa3, 0x6d, 0x73, 0x67, 0xa2, ...first, 0xa3, 0x6d, 0x73, 0x67, 0xa3, ...last]);
    const msg = decodePayload(Flag.MSGPACK, twice)['msg'];
    assert.ok(msg instanceof StrBytes && sameBytes(msg, last));
  });

  it('decodeMsgpackKeeping finds the str at a nested path past maps, arrays, bins and exts', () => {
    const bytes = new Uint8Array([0x80, 0xff, 0x41]);
    const value = { a: [1, { msg: 'no' }, new Uint8Array(300)], message: { id: 2n ** 60n, z: 1.5, msg: StrBytes.view(bytes), y: 'after' } };
    const decoded = decodeMsgpackKeeping(encodeMsgpack(value), ['message', 'msg']) as { message: { msg: unknown; y: string } };
    assert.ok(decoded.message.msg instanceof StrBytes && sameBytes(decoded.message.msg, bytes));
    assert.equal(decoded.message.y, 'after');
  });
});

describe('property: hostile input only ever yields FpnnProtocolError / RtmError', () => {
  it('random byte streams', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 400 }), fc.array(fc.nat(), { maxLength: 10 }), (bytes, cuts) => {
        feedHostile(cutAt(bytes, cuts), 4096);
      }),
      { numRuns: 3000 },
    );
  });

  it('random bytes behind a valid header (any mtype/flag/ss/psize)', () => {
    fc.assert(
      fc.property(
        fc.record({
          version: fc.integer({ min: 0, max: 2 }),
          flag: fc.constantFrom(0x80, 0x40, 0xc0, 0x90, 0x00, 0x10),
          mtype: fc.integer({ min: 0, max: 3 }),
          ss: fc.integer({ min: 0, max: 255 }),
          psize: fc.oneof(fc.integer({ min: 0, max: 300 }), fc.integer({ min: 0, max: 0xffffffff })),
        }),
        fc.uint8Array({ maxLength: 600 }),
        fc.array(fc.nat(), { maxLength: 6 }),
        (h, body, cuts) => {
          const head = new Uint8Array(12);
          head.set([0x46, 0x50, 0x4e, 0x4e, h.version, h.flag, h.mtype, h.ss]);
          new DataView(head.buffer).setUint32(8, h.psize, true);
          feedHostile(cutAt(new Uint8Array(Buffer.concat([head, body])), cuts), 1024);
        },
      ),
      { numRuns: 3000 },
    );
  });

  it('valid streams truncated, with bytes flipped, inserted or deleted', () => {
    const base = golden();
    const mutation = fc.oneof(
      fc.record({ op: fc.constant('flip' as const), at: fc.nat(), value: fc.integer({ min: 0, max: 255 }) }),
      fc.record({ op: fc.constant('insert' as const), at: fc.nat(), value: fc.integer({ min: 0, max: 255 }) }),
      fc.record({ op: fc.constant('delete' as const), at: fc.nat(), value: fc.constant(0) }),
      fc.record({ op: fc.constant('truncate' as const), at: fc.nat(), value: fc.constant(0) }),
    );
    fc.assert(
      fc.property(fc.array(mutation, { minLength: 1, maxLength: 5 }), fc.array(fc.nat(), { maxLength: 8 }), (mutations, cuts) => {
        const bytes = [...base];
        for (const m of mutations) {
          const at = m.at % (bytes.length + 1);
          if (m.op === 'flip' && at < bytes.length) bytes[at] = m.value;
          else if (m.op === 'insert') bytes.splice(at, 0, m.value);
          else if (m.op === 'delete') bytes.splice(at, 1);
          else if (m.op === 'truncate') bytes.length = at;
        }
        feedHostile(cutAt(Uint8Array.from(bytes), cuts), 8192);
      }),
      { numRuns: 5000 },
    );
  });

  it('random payload bytes given to decodePayload', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 200 }), fc.boolean(), (bytes, json) => {
        try {
          const p = decodePayload(json ? Flag.JSON : Flag.MSGPACK, bytes);
          assert.equal(typeof p, 'object');
        } catch (err) {
          if (!(err instanceof RtmError)) throw err;
        }
      }),
      { numRuns: 3000 },
    );
    // Prototype pollution attempts decode as plain keys or fail, and never touch Object.prototype.
    for (const text of ['{"__proto__":{"polluted":1}}', '{"constructor":{"prototype":{"polluted":1}}}']) {
      try {
        decodePayload(Flag.JSON, new TextEncoder().encode(text));
      } catch (err) {
        assert.ok(err instanceof RtmError);
      }
    }
    const msgpackProto = new Uint8Array(Buffer.from('81a95f5f70726f746f5f5f81a8706f6c6c75746564c3', 'hex'));
    try {
      decodePayload(Flag.MSGPACK, msgpackProto);
    } catch (err) {
      assert.ok(err instanceof RtmError);
    }
    assert.equal(({} as Record<string, unknown>).polluted, undefined);
  });

  it('random ciphertext for the package decryptor: bounded, only FpnnProtocolError', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 300 }), fc.array(fc.nat(), { maxLength: 8 }), (bytes, cuts) => {
        const rx = new PackageCipher(new Uint8Array(16), new Uint8Array(16), { maxFrameBytes: 256 });
        const plainChunks: Uint8Array[] = [];
        try {
          for (const chunk of cutAt(bytes, cuts)) {
            plainChunks.push(...rx.decrypt(chunk));
            assert.ok(rx.bufferedBytes <= 256 + 4);
          }
        } catch (err) {
          if (!(err instanceof FpnnProtocolError)) throw err;
        }
        feedHostile(plainChunks, 256);
      }),
      { numRuns: 3000 },
    );
  });
});
