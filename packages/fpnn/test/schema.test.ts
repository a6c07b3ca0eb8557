import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { asInt64, decodePayload, encodePayload, Flag, FpnnErrorCode, RtmError, RtmErrorCode, schema } from '@rtm/fpnn';

const sendmsg = {
  from: schema.id,
  to: schema.id,
  mid: schema.id,
  mtype: schema.int,
  msg: schema.body,
  attrs: schema.optional(schema.str),
  uids: schema.optional(schema.list(schema.id)),
  desc: schema.optional(schema.bool),
  kv: schema.optional(schema.strMap),
};

const rejects = (payload: Record<string, unknown>, code: number, re: RegExp): void => {
  assert.throws(
    () => schema.parse(sendmsg, payload),
    (e: unknown) => e instanceof RtmError && e.code === code && re.test(e.message),
  );
};

const base = { from: 1001, to: 1002n, mid: 0, mtype: 30, msg: 'hi' };

describe('schema coercions (spec/fpnn.md §2)', () => {
  it('ids: any integer width, bigint, integral float64, decimal string → bigint', () => {
    const r = schema.parse(sendmsg, { ...base, from: 1795315914229007, to: '81985529216486895', mid: 81985529216486895n });
    assert.equal(r.from, 1795315914229007n);
    assert.equal(r.to, 81985529216486895n);
    assert.equal(r.mid, 81985529216486895n);
    // float64 from msgpack-lite (0xcb) holding an integer, as the Node SDK sends a JS-number mid.
    const decoded = decodePayload(Flag.MSGPACK, Buffer.from('81a36d6964cb431983523d4f143c', 'hex'));
    assert.equal(typeof decoded.mid, 'number');
    assert.equal(schema.parse({ mid: schema.id }, decoded).mid, 1795315914229007n);
    assert.equal(asInt64(2n ** 64n), undefined);
    assert.equal(asInt64(-(2n ** 63n)), -(2n ** 63n));
    assert.equal(asInt64(1e30), undefined, 'an integral float beyond 64 bits');
    assert.equal(asInt64(2n ** 64n - 1n), 2n ** 64n - 1n, 'a uint64 (salts may be)');
  });

  it('ids are signed 64-bit: above 2^63 - 1 is 10010, not a store error later', () => {
    assert.equal(schema.parse(sendmsg, { ...base, to: 2n ** 63n - 1n }).to, 2n ** 63n - 1n);
    rejects({ ...base, to: 2n ** 63n }, 10010, /'to' must be an integer \(int64\)/);
    rejects({ ...base, mid: 2n ** 64n - 1n }, 10010, /'mid'/);
    rejects({ ...base, from: '9223372036854775808' }, 10010, /'from'/);
    rejects({ ...base, uids: [1, 2n ** 63n] }, 10010, /'uids\[1\]'/);
  });

  it('non-integral numbers are rejected with 10010 (TYPE_CONVERT)', () => {
    rejects({ ...base, from: 1.5 }, FpnnErrorCode.PROTO_TYPE_CONVERT, /'from' must be an integer/);
    rejects({ ...base, mtype: 30.25 }, 10010, /'mtype'/);
    rejects({ ...base, mid: Number.NaN }, 10010, /'mid'/);
    rejects({ ...base, to: 'abc' }, 10010, /'to'/);
    rejects({ ...base, from: true }, 10010, /'from'.*boolean/);
    rejects({ ...base, msg: 5 }, 10010, /'msg' must be a string or binary/);
    rejects({ ...base, uids: [1, 2.5] }, 10010, /'uids\[1\]'/);
    rejects({ ...base, uids: 7 }, 10010, /'uids' must be a list/);
    rejects({ ...base, desc: 2 }, 10010, /'desc' must be a boolean, got integer 2$/);
    rejects({ ...base, attrs: 5n }, 10010, /'attrs' must be a string, got integer 5$/);
    rejects({ ...base, mtype: 2 ** 60 }, 10010, /'mtype' must be an integer, got \d+ \(out of range\)$/);
    rejects({ ...base, kv: [] }, 10010, /'kv' must be a map of strings/);
  });

  it('strings accept str or bin; message bodies keep their kind', () => {
    const bin = new Uint8Array(Buffer.from('{"k":"v"}'));
    const r = schema.parse(sendmsg, { ...base, msg: bin, attrs: bin });
    assert.equal(r.attrs, '{"k":"v"}');
    assert.ok(r.msg instanceof Uint8Array);
    assert.equal(schema.parse(sendmsg, base).msg, 'hi');
    // Through msgpack: bin stays bin, str stays str.
    const p = decodePayload(Flag.MSGPACK, encodePayload(Flag.MSGPACK, { ...base, msg: bin }));
    assert.ok(schema.parse(sendmsg, p).msg instanceof Uint8Array);
  });

  it('booleans accept true/false and 0/1, also in a 64-bit integer form', () => {
    assert.equal(schema.parse(sendmsg, { ...base, desc: 1 }).desc, true);
    assert.equal(schema.parse(sendmsg, { ...base, desc: false }).desc, false);
    // int64 0 / 1 (d3 …): msgpack decodes them as bigints.
    for (const [hex, want] of [
      ['d30000000000000001', true],
      ['d30000000000000000', false],
      ['cf0000000000000001', true],
    ] as const) {
      const p = decodePayload(Flag.MSGPACK, Buffer.from('81a464657363' + hex, 'hex'));
      assert.equal(schema.parse({ desc: schema.bool }, p).desc, want, hex);
    }
    rejects({ ...base, desc: 2n }, 10010, /'desc' must be a boolean/);
  });

  it('nil is absent: optional keys drop out, required keys → 10009 (KEY_NOT_FOUND)', () => {
    const r = schema.parse(sendmsg, { ...base, attrs: null, uids: undefined });
    assert.equal('attrs' in r, false);
    assert.equal('uids' in r, false);
    rejects({ ...base, msg: null }, FpnnErrorCode.PROTO_KEY_NOT_FOUND, /missing required key 'msg'/);
    const { mtype: _omit, ...noMtype } = base;
    rejects(noMtype, 10009, /'mtype'/);
    // Through msgpack: the browser SDK writes undefined arguments as nil (0xc0).
    const p = decodePayload(Flag.MSGPACK, Buffer.from('81a5636c656172c0', 'hex'));
    assert.deepEqual(schema.parse({ clear: schema.optional(schema.bool) }, p), {});
  });

  it("sets: a list, or a map whose keys are the items (Go's map[int64]struct{}); the values are ignored", () => {
    const listen = { uids: schema.setOf(schema.id), events: schema.optional(schema.setOf(schema.str)) };
    assert.deepEqual(schema.parse(listen, { uids: [1, 2n] }).uids, [1n, 2n]);
    // What the Go SDK sends: {uids: {2002: {}, 2^60+1: {}}, events: {login: {}}}, keys as msgpack ints.
    const hex = '82a47569647382cd07d280d3100000000000000180a66576656e747381a56c6f67696e80';
    const r = schema.parse(listen, decodePayload(Flag.MSGPACK, Buffer.from(hex, 'hex')));
    assert.deepEqual(r, { uids: [2002n, 2n ** 60n + 1n], events: ['login'] });
    assert.throws(
      () => schema.parse(listen, { uids: { x: {} } }),
      (e: unknown) => e instanceof RtmError && e.code === 10010 && /'uids\.x'/.test(e.message),
    );
    assert.throws(
      () => schema.parse(listen, { uids: 'x' }),
      (e: unknown) => e instanceof RtmError && e.code === 10010 && /'uids' must be a list/.test(e.message),
    );
  });

  it('unknown keys are ignored and inherited keys are never read', () => {
    const r = schema.parse(sendmsg, { ...base, version: 'PYTHON-2.2.6' } as Record<string, unknown>);
    assert.equal('version' in r, false);
    const proto = Object.create({ mtype: 30 }) as Record<string, unknown>;
    Object.assign(proto, { from: 1, to: 2, mid: 3, msg: 'x' });
    assert.throws(() => schema.parse(sendmsg, proto), { code: 10009 });
  });
});

describe('ids naming a user, group or room (positiveId)', () => {
  const target = {
    to: schema.positiveId('uid'),
    gid: schema.optional(schema.positiveId('gid')),
    rids: schema.optional(schema.list(schema.positiveId('rid'))),
    mid: schema.id,
  };
  const refused = (payload: Record<string, unknown>, code: number, ex: string | RegExp): void => {
    assert.throws(
      () => schema.parse(target, payload),
      (e: unknown) => e instanceof RtmError && e.code === code && (typeof ex === 'string' ? e.message === ex : ex.test(e.message)),
    );
  };

  it('> 0 is read as any id, up to int64; a mid may be ≤ 0', () => {
    assert.deepEqual(schema.parse(target, { to: 1, gid: '2', rids: [3n, 2n ** 63n - 1n], mid: -1 }), {
      to: 1n,
      gid: 2n,
      rids: [3n, 2n ** 63n - 1n],
      mid: -1n,
    });
  });

  it('≤ 0 is 200034 INVALID_PARAMETER naming the key (and index) and the value', () => {
    refused({ to: 0, mid: 1 }, RtmErrorCode.INVALID_PARAMETER, 'to must be > 0 (a uid), got 0');
    refused({ to: -5n, mid: 1 }, 200034, 'to must be > 0 (a uid), got -5');
    refused({ to: '-9223372036854775808', mid: 1 }, 200034, 'to must be > 0 (a uid), got -9223372036854775808');
    refused({ to: 1, gid: 0, mid: 1 }, 200034, 'gid must be > 0 (a gid), got 0');
    refused({ to: 1, rids: [4, 0], mid: 1 }, 200034, 'rids[1] must be > 0 (a rid), got 0');
  });

  it('a value of the wrong type is still 10010, a missing one 10009', () => {
    refused({ to: 'x', mid: 1 }, 10010, /'to' must be an integer \(int64\)/);
    refused({ to: 2n ** 63n, mid: 1 }, 10010, /'to'/);
    refused({ to: 1, rids: 5, mid: 1 }, 10010, /'rids' must be a list of a rid/);
    refused({ mid: 1 }, 10009, /'to'/);
  });

  it('the field says what it names, a list field its item: a schema can be walked for its ids', () => {
    assert.equal(target.to.names, 'uid');
    assert.equal(target.gid.names, 'gid', 'kept by optional');
    assert.equal(target.rids.names, 'rid', 'a list of rids names rids');
    assert.equal(target.rids.item?.names, 'rid');
    assert.equal(target.mid.names, undefined);
    assert.equal(schema.list(schema.id).names, undefined);
  });
});
