import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import {
  decodePayload,
  encodeAnswer,
  encodePayload,
  encodeQuest,
  Flag,
  FpnnProtocolError,
  FrameDecoder,
  HEADER_BYTES,
  json,
  MType,
  patchSeq,
  type Frame,
  type Payload,
  type PayloadFlag,
} from '@rtm/fpnn';

const hex = (b: Uint8Array): string => Buffer.from(b).toString('hex');
const concat = (parts: Uint8Array[]): Uint8Array => new Uint8Array(Buffer.concat(parts));

/** A comparable view of a decoded frame (payload as hex). */
function view(f: Frame): Record<string, unknown> {
  return f.kind === 'answer'
    ? { kind: f.kind, flag: f.flag, seq: f.seq, ok: f.ok, payload: hex(f.payload) }
    : { kind: f.kind, flag: f.flag, seq: f.seq, oneway: f.oneway, method: f.method, payload: hex(f.payload) };
}

/**
 * nats.js `byByteTest` style: the same stream decoded whole, one byte at a time, and split in two
 * at every position must give the same frames, with nothing left buffered.
 */
function byByteTest(stream: Uint8Array, expected: Array<Record<string, unknown>>): void {
  const whole = new FrameDecoder().push(stream).map(view);
  assert.deepEqual(whole, expected, 'one chunk');
  const d = new FrameDecoder();
  const byByte: Frame[] = [];
  for (const b of stream) byByte.push(...d.push(Uint8Array.of(b)));
  assert.deepEqual(byByte.map(view), expected, 'byte by byte');
  assert.equal(d.bufferedBytes, 0);
  for (let cut = 0; cut <= stream.length; cut++) {
    const dd = new FrameDecoder();
    const got = [...dd.push(stream.subarray(0, cut)), ...dd.push(stream.subarray(cut))].map(view);
    assert.deepEqual(got, expected, `cut at ${cut}`);
    assert.equal(dd.bufferedBytes, 0);
  }
}

function header(fields: { version?: number; flag?: number; mtype?: number; ss?: number; psize?: number; magic?: string }): Uint8Array {
  const out = new Uint8Array(HEADER_BYTES);
  out.set(new TextEncoder().encode(fields.magic ?? 'FPNN'), 0);
  out[4] = fields.version ?? 1;
  out[5] = fields.flag ?? Flag.MSGPACK;
  out[6] = fields.mtype ?? MType.TWOWAY;
  out[7] = fields.ss ?? 4;
  new DataView(out.buffer).setUint32(8, fields.psize ?? 1, true);
  return out;
}

describe('frame encoding (spec/fpnn.md §1)', () => {
  it('writes the exact header layout for each mtype', () => {
    const payload = encodePayload(Flag.MSGPACK, {});
    assert.equal(hex(encodeQuest('*ping', payload, Flag.MSGPACK, false, 2)), '46504e4e0180010501000000020000002a70696e6780');
    assert.equal(hex(encodeQuest('kickout', payload, Flag.MSGPACK, true)), '46504e4e01800007010000006b69636b6f757480');
    assert.equal(hex(encodeAnswer(1, payload, Flag.MSGPACK)), '46504e4e0180020001000000010000' + '0080');
    assert.equal(encodeAnswer(1, payload, Flag.MSGPACK, false)[7], 1);
    const f = encodeQuest('ping', payload, Flag.MSGPACK, false, 1);
    patchSeq(f, 0x01020304);
    assert.equal(new FrameDecoder().push(f)[0]!.seq, 0x01020304);
    const inside = new Uint8Array(f.length + 5); // the frame copied at offset 3 of a larger buffer
    inside.set(f, 3);
    patchSeq(inside, 0xfffffffe, 3);
    assert.equal(new FrameDecoder().push(inside.subarray(3, 3 + f.length))[0]!.seq, 0xfffffffe);
    assert.deepEqual([...inside.subarray(0, 3), ...inside.subarray(3 + f.length)], [0, 0, 0, 0, 0], 'nothing outside the frame');
  });

  it('rejects method names that are empty or longer than 255 bytes', () => {
    assert.throws(() => encodeQuest('', new Uint8Array(1), Flag.MSGPACK, false, 1), RangeError);
    assert.throws(() => encodeQuest('x'.repeat(256), new Uint8Array(1), Flag.MSGPACK, false, 1), RangeError);
    const [frame] = new FrameDecoder().push(encodeQuest('é'.repeat(127), encodePayload(Flag.MSGPACK, {}), Flag.MSGPACK, false, 1));
    assert.equal(frame?.kind === 'quest' && frame.method, 'é'.repeat(127));
  });
});

describe('FrameDecoder: splits and joins (byByteTest)', () => {
  it('every byte split of one frame, and many frames in one chunk, decode the same', () => {
    const frames: Uint8Array[] = [];
    const expected: Array<Record<string, unknown>> = [];
    const add = (f: Uint8Array): void => {
      frames.push(f);
      expected.push(view(new FrameDecoder().push(f)[0]!));
    };
    add(
      encodeQuest(
        'sendmsg',
        encodePayload(Flag.MSGPACK, { mid: 81985529216486895n, msg: 'hello', bin: new Uint8Array([0, 1, 2]) }),
        Flag.MSGPACK,
        false,
        7,
      ),
    );
    add(encodeQuest('kickout', encodePayload(Flag.MSGPACK, {}), Flag.MSGPACK, true));
    add(encodeAnswer(7, encodePayload(Flag.JSON, { mtime: 2n ** 60n }), Flag.JSON));
    add(encodeAnswer(8, encodePayload(Flag.MSGPACK, { code: 20004, ex: 'unknown method' }), Flag.MSGPACK, false));
    add(encodeAnswer(9, new Uint8Array(0), Flag.MSGPACK));
    add(encodeQuest('*ping', encodePayload(Flag.JSON, {}), Flag.JSON, false, 0xffffffff));
    byByteTest(frames[0]!, expected.slice(0, 1));
    byByteTest(concat(frames), expected);
  });

  it('append/next stops at a frame boundary and takeBuffered returns the rest untouched', () => {
    const a = encodeQuest('*key', encodePayload(Flag.MSGPACK, { x: 1 }), Flag.MSGPACK, false, 1);
    const rest = Uint8Array.from({ length: 100 }, (_, i) => i * 7);
    for (let cut = 0; cut <= a.length + rest.length; cut++) {
      const d = new FrameDecoder();
      const all = concat([a, rest]);
      d.append(all.subarray(0, Math.min(cut, a.length + 3)));
      d.append(all.subarray(Math.min(cut, a.length + 3)));
      const f = d.next();
      assert.equal(f?.kind === 'quest' && f.method, '*key');
      assert.equal(d.bufferedBytes, rest.length);
      assert.equal(hex(d.takeBuffered()), hex(rest));
      assert.equal(d.bufferedBytes, 0);
      assert.equal(d.next(), undefined);
    }
  });

  it('a large frame arriving in small reads is joined once (no quadratic copying)', () => {
    const big = encodeQuest('big', encodePayload(Flag.MSGPACK, { data: new Uint8Array(4 * 1024 * 1024).fill(3) }), Flag.MSGPACK, false, 1);
    const d = new FrameDecoder();
    const started = performance.now();
    let frames: Frame[] = [];
    for (let at = 0; at < big.length; at += 1460) frames = frames.concat(d.push(big.subarray(at, at + 1460)));
    assert.equal(frames.length, 1);
    assert.equal(frames[0]!.payload.length, big.length - 16 - 3);
    assert.ok(performance.now() - started < 2000, 'should take milliseconds, not seconds');
  });

  it('the method-name cache keeps copies of the names, never the (Node Buffer) reads they arrived in', async () => {
    // Every new name is remembered for good; a view into its read would keep that read alive: up to
    // 512 reads, each as big as a frame (a WebSocket message arrives as one Buffer of up to 8 MiB).
    setFlagsFromString('--expose-gc');
    const gc = runInNewContext('gc') as () => void;
    const refs: WeakRef<ArrayBufferLike>[] = [];
    (() => {
      for (let i = 0; i < 3; i++) {
        const frame = encodeQuest(
          `pinned${i}_${Date.now()}`,
          encodePayload(Flag.MSGPACK, { s: 'a'.repeat(1 << 20) }),
          Flag.MSGPACK,
          false,
          1,
        );
        const read = Buffer.alloc(frame.length); // a buffer of its own, as a socket read or a WebSocket message
        read.set(frame);
        refs.push(new WeakRef(read.buffer));
        assert.equal(new FrameDecoder().push(read).length, 1);
      }
    })();
    for (let i = 0; i < 5 && refs.some((r) => r.deref() !== undefined); i++) {
      await new Promise((r) => setImmediate(r));
      gc();
    }
    assert.equal(refs.filter((r) => r.deref() !== undefined).length, 0, 'reads of 1 MiB kept alive after their frames were decoded');
  });

  it('a small unfinished tail of a big socket read (a Node Buffer) is copied, not kept as a view pinning the read', () => {
    const big = encodeQuest('big', encodePayload(Flag.MSGPACK, { s: 'a'.repeat(100_000) }), Flag.MSGPACK, false, 1);
    const next = encodeQuest('next', encodePayload(Flag.MSGPACK, {}), Flag.MSGPACK, false, 2);
    // Sockets deliver Buffers, whose slice() is a view: the copy must not rely on it.
    const read = Buffer.concat([big, next.subarray(0, 10)]);
    const d = new FrameDecoder();
    assert.equal(d.push(read).length, 1);
    assert.equal(d.bufferedBytes, 10);
    const held = (d as unknown as { pending: Uint8Array }).pending;
    assert.ok(held.buffer.byteLength < 4096, `the 10-byte tail holds a ${held.buffer.byteLength}-byte buffer`);
    assert.deepEqual(
      d.push(next.subarray(10)).map((f) => f.kind === 'quest' && f.method),
      ['next'],
    );
  });
});

describe('frames and payloads round-trip', () => {
  const payloads: Payload[] = [
    {},
    { a: 1, s: 'x', b: true, f: 1.5, neg: -3 },
    { ids: [1n, 2n ** 63n - 1n, -(2n ** 63n)], nested: { deep: [[1, 'two', new Uint8Array([3])]] } },
  ];
  for (const flag of [Flag.MSGPACK, Flag.JSON] as PayloadFlag[]) {
    for (const mtype of ['oneway', 'twoway', 'answer'] as const) {
      it(`${mtype} with ${flag === Flag.MSGPACK ? 'msgpack' : 'JSON'} payloads`, () => {
        for (const payload of payloads) {
          if (flag === Flag.JSON && 'nested' in payload) continue; // bin has no JSON form
          const bytes = encodePayload(flag, payload);
          const frame = mtype === 'answer' ? encodeAnswer(42, bytes, flag) : encodeQuest('method.x', bytes, flag, mtype === 'oneway', 42);
          const [got] = new FrameDecoder().push(frame);
          assert.ok(got);
          assert.equal(got.flag, flag);
          assert.equal(got.seq, mtype === 'oneway' ? 0 : 42);
          if (got.kind === 'quest') {
            assert.equal(got.oneway, mtype === 'oneway');
            assert.equal(got.method, 'method.x');
          } else assert.equal(got.ok, true);
          assert.deepEqual(normalize(decodePayload(flag, got.payload)), normalize(payload));
        }
      });
    }
  }

  it('int64 ids above 2^53 survive as bigint both ways, in msgpack and JSON', () => {
    const ids = { mid: 81985529216486895n, salt: 29414456923222016n, neg: -(2n ** 62n) - 1n, max: 2n ** 64n - 1n, min: -(2n ** 63n) };
    for (const flag of [Flag.MSGPACK, Flag.JSON] as PayloadFlag[]) {
      const decoded = decodePayload(flag, new FrameDecoder().push(encodeQuest('m', encodePayload(flag, ids), flag, false, 1))[0]!.payload);
      for (const [k, v] of Object.entries(ids)) {
        assert.equal(typeof decoded[k], 'bigint', `${k} in ${flag}`);
        assert.equal(decoded[k], v);
      }
    }
    // Small int64 (0xd3, as the browser SDK writes 1001) also decodes as bigint; smallest forms as number.
    assert.deepEqual(decodePayload(Flag.MSGPACK, Buffer.from('82a3756964d300000000000003e9a3676964cd07d1', 'hex')), {
      uid: 1001n,
      gid: 2001,
    });
    // A JS number beyond 2^53 would lose precision: bigint is what must be sent.
    assert.equal(hex(encodePayload(Flag.MSGPACK, { x: 2n ** 60n })), '81a178d31000000000000000');
  });

  // spec/fpnn.md §2. json-bigint reads literals over 15 characters as big numbers; with native
  // BigInt it threw on a fraction or exponent there, and the whole payload was refused (20006).
  it('JSON number literals of any length: integral values exact (bigint when long), others JS numbers', () => {
    const text =
      '{"spelled":1795315914246001.0,"fraction":0.30000000000000004,"big":81985529216486895,"bigSpelled":9007199254740993.000,' +
      '"exp":12345678901234567e-1,"negative":-1795315914246001.25,"short":1.5,"small":7,"huge":123456789012345678901234567890,' +
      '"nested":[{"x":[1795315914246001.0]}],"text":"0.30000000000000004 stays a string"}';
    // structuredClone: JSON maps have a null prototype, deepEqual would tell them from literals.
    assert.deepEqual(structuredClone(decodePayload(Flag.JSON, new TextEncoder().encode(text))), {
      spelled: 1795315914246001n,
      fraction: 0.30000000000000004,
      big: 81985529216486895n,
      bigSpelled: 9007199254740993n, // exact, though no double holds it
      exp: 1234567890123456.8, // the double nearest 1234567890123456.7
      negative: -1795315914246001.25,
      short: 1.5,
      small: 7,
      huge: 123456789012345678901234567890n,
      nested: [{ x: [1795315914246001n] }],
      text: '0.30000000000000004 stays a string',
    });
    // The HTTP bridge parses with the same rules.
    assert.deepEqual(structuredClone(json.parse('{"a":[0.30000000000000004,1795315914246001.0]}')), {
      a: [0.30000000000000004, 1795315914246001n],
    });
  });
});

describe('FrameDecoder: protocol errors', () => {
  const ok = encodeQuest('ping', encodePayload(Flag.MSGPACK, {}), Flag.MSGPACK, false, 1);

  it('accepts version 0 (Python SDK) and 1, rejects 2', () => {
    for (const version of [0, 1]) {
      const f = ok.slice();
      f[4] = version;
      assert.equal(new FrameDecoder().push(f).length, 1);
    }
    const f = ok.slice();
    f[4] = 2;
    assert.throws(
      () => new FrameDecoder().push(f),
      (e: unknown) => e instanceof FpnnProtocolError && /version 2/.test(e.message),
    );
  });

  it('rejects bad magic, unknown mtype, a flag with neither payload bit, a quest without method', () => {
    const cases: Array<[string, Uint8Array, RegExp]> = [
      ['magic', header({ magic: 'FPNX' }), /bad magic/],
      ['HTTP', new TextEncoder().encode('GET / HTTP/1.1\r\n'), /bad magic/],
      ['mtype 3', header({ mtype: 3 }), /unknown frame mtype 3/],
      ['mtype 255', header({ mtype: 255 }), /mtype/],
      ['flag 0', header({ flag: 0 }), /payload flag/],
      ['flag 0x10 (encrypt bit only)', header({ flag: 0x10 }), /payload flag/],
      ['flag 0x20 (zip bit only)', header({ flag: 0x20 }), /payload flag/],
      ['no method', header({ ss: 0 }), /without a method/],
    ];
    for (const [name, bytes, re] of cases) {
      const d = new FrameDecoder();
      assert.throws(
        () => d.push(bytes),
        (e: unknown) => e instanceof FpnnProtocolError && re.test(e.message),
        name,
      );
      // The decoder is unusable afterwards: the connection must be closed.
      assert.throws(() => d.push(ok), /already failed/, name);
      assert.throws(() => d.next(), /already failed/, name);
    }
  });

  it('rejects an oversize declared length from the 12-byte header alone, before the body arrives', () => {
    const d = new FrameDecoder(1024);
    const h = header({ mtype: MType.TWOWAY, ss: 4, psize: 1024 - 16 - 4 + 1 });
    assert.deepEqual(d.push(h.subarray(0, 11)), []);
    assert.throws(
      () => d.push(h.subarray(11)),
      (e: unknown) => e instanceof FpnnProtocolError && /1025 bytes exceeds the 1024-byte limit/.test(e.message),
    );
    // Exactly the limit is accepted (and waits for the body).
    const at = new FrameDecoder(1024);
    assert.deepEqual(at.push(header({ mtype: MType.TWOWAY, ss: 4, psize: 1024 - 20 })), []);
    // Default limit 8 MiB; psize 0xffffffff fails at once (never wraps).
    assert.throws(
      () => new FrameDecoder().push(header({ mtype: MType.ANSWER, ss: 0, psize: 0xffffffff })),
      /exceeds the 8388608-byte limit/,
    );
    assert.throws(() => new FrameDecoder().push(header({ mtype: MType.ONEWAY, ss: 255, psize: 8 * 1024 * 1024 })), /exceeds/);
  });

  it('rejects a method name that is not UTF-8', () => {
    const f = encodeQuest('abcd', encodePayload(Flag.MSGPACK, {}), Flag.MSGPACK, false, 1);
    f[16] = 0xff;
    assert.throws(
      () => new FrameDecoder().push(f),
      (e: unknown) => e instanceof FpnnProtocolError && /UTF-8/.test(e.message),
    );
  });

  it('payloads that are not a map are RtmError 10003/10004/20006, never another error', async () => {
    const { RtmError } = await import('@rtm/fpnn');
    const bad: Array<[PayloadFlag, string, number]> = [
      [Flag.MSGPACK, '91c0', 10003],
      [Flag.MSGPACK, 'c0', 10003],
      [Flag.MSGPACK, 'c4020102', 10003],
      [Flag.MSGPACK, 'c1', 10003], // the never-used byte: msgpackr returns a C1Type object
      [Flag.MSGPACK, 'd6ff00000001', 10003], // a timestamp ext decodes to a Date
      [Flag.MSGPACK, '82a161', 20006],
      [Flag.JSON, Buffer.from('[1]').toString('hex'), 10003],
      [Flag.JSON, Buffer.from('{"a":').toString('hex'), 10004], // PROTO_JSON_CONVERT, as the HTTP bridge answers
      [Flag.JSON, Buffer.from('{"a":1e400}').toString('hex'), 10004], // valid JSON, but no double holds it
      [Flag.JSON, Buffer.from('null').toString('hex'), 10003],
    ];
    for (const [flag, h, code] of bad) {
      assert.throws(
        () => decodePayload(flag, Buffer.from(h, 'hex')),
        (e: unknown) => e instanceof RtmError && e.code === code,
        h,
      );
    }
    assert.deepEqual(decodePayload(Flag.MSGPACK, new Uint8Array(0)), {});
  });
});

/** bigint/number-insensitive deep form for comparisons (JSON may return small ints as numbers). */
function normalize(value: unknown): unknown {
  if (typeof value === 'bigint') return `int:${value}`;
  if (typeof value === 'number' && Number.isInteger(value)) return `int:${value}`;
  if (value instanceof Uint8Array) return `bin:${hex(value)}`;
  if (Array.isArray(value)) return value.map(normalize);
  if (value && typeof value === 'object') return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, normalize(v)]));
  return value;
}
