import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { Payload } from '@rtm/fpnn';
import { RawClient, startTestServer, TEST_PID, TEST_SECRET, type TestServer } from '@rtm/testkit';

// Frames exactly as the official client SDKs build them (field names, msgpack widths: BigInt =
// int64, plain numbers = the smallest int), over the transport each uses, and what each SDK then
// reads from the answers and pushes. Sources: highras/rtm-client-sdk-* (reference only).

describe('official client SDK frames', () => {
  let server: TestServer;
  let backend: RawClient;
  const raws: RawClient[] = [];
  let uidSeq = 7_000n;

  const token = async (uid: bigint): Promise<string> => {
    const answer = await backend.signed('gettoken', { uid }, TEST_PID, TEST_SECRET);
    return answer.token as string;
  };

  /** A native SDK's connection (raw FPNN over TCP) logged in with the SDK's own `auth` shape. */
  const nativeLogin = async (uid: bigint, extra: Payload = {}): Promise<RawClient> => {
    const raw = await RawClient.tcp(server.clientEndpoint);
    raws.push(raw);
    const answer = await raw.quest('auth', { pid: TEST_PID, uid, token: await token(uid), ...extra });
    assert.deepEqual(answer, { ok: true });
    return raw;
  };

  before(async () => {
    server = await startTestServer();
    backend = await RawClient.tcp(server.serverEndpoint);
  });
  after(async () => {
    for (const raw of raws) raw.close();
    backend.close();
    await server.close();
  });

  it('Android auth: authv 1 and ts 0 on every token login, plus lang and device (RTMCore auth)', async () => {
    const uid = ++uidSeq;
    await nativeLogin(uid, { lang: 'en', device: 'Google-Pixel', version: 'Android-2.7.0', authv: 1, ts: 0 });
  });

  it('Unity auth: lang and attrs (RTMClient.Core Auth), then bye answered {}', async () => {
    const uid = ++uidSeq;
    const raw = await nativeLogin(uid, { version: 'Unity-2.7.26', lang: 'zh-CN', attrs: { device: 'ios' } });
    assert.deepEqual(await raw.quest('bye', {}), {});
  });

  it('older SDKs ask the dispatch step `which` for a gate (Android/C# AsyncFetchRtmGateEndpoint, objc _whichRequest) and log in there', async () => {
    const dispatch = await RawClient.tcp(server.clientEndpoint);
    raws.push(dispatch);
    for (const what of ['rtmGated', 'rtmGated@cluster-a']) {
      const answer = await dispatch.quest('which', { what, addrType: 'ipv4', proto: 'tcp' });
      assert.deepEqual(answer, { endpoint: server.clientEndpoint });
    }
    await assert.rejects(dispatch.quest('which', { what: 'fileGated', addrType: 'ipv4' }), { code: 200034 });
    const uid = ++uidSeq;
    const gate = await RawClient.tcp(
      ((await dispatch.quest('which', { what: 'rtmGated', addrType: 'ipv6' })) as { endpoint: string }).endpoint,
    );
    raws.push(gate);
    assert.deepEqual(await gate.quest('auth', { pid: TEST_PID, uid, token: await token(uid), lang: 'en' }), { ok: true });
  });

  it('binary legacy audio (mtype 31, bin) reaches the receiver byte for byte, in the push and in history', async () => {
    // The C# client SDK (rtmGate SendAudio(long to, byte[] audio, …) → SendMessage(to, CHAT_TYPE.audio, …))
    // and Android's sendAudio(byte[]) send raw audio as msgpack bin with mtype 31; the receiving
    // SDKs keep a mtype-31 body as byte[] (Unity RTMProcessor.pushmsg: "if (mtype != audio) decode
    // bytes as string"). Decoding it as UTF-8 replaced every invalid byte with U+FFFD.
    const [A, B] = [++uidSeq, ++uidSeq];
    const a = await nativeLogin(A);
    const b = await nativeLogin(B);
    const audio = Uint8Array.from([0x23, 0x21, 0x41, 0x4d, 0x52, 0x2d, 0x57, 0x42, 0x0a, 0xff, 0xfe, 0x80, 0x00, 0xc3, 0x28, 0x9f]);
    const mid = (BigInt(Date.now()) << 16n) + 1n;
    const sent = await a.quest('sendmsg', { to: B, mid, mtype: 31, msg: audio, attrs: '' });
    assert.equal(typeof sent.mtime, 'bigint');

    const [push] = await b.waitForPushes('pushmsg');
    assert.ok(push!.msg instanceof Uint8Array, `pushmsg msg must stay bin, got ${typeof push!.msg}`);
    assert.deepEqual(Buffer.from(push!.msg), Buffer.from(audio));

    const page = await b.quest('getp2pmsg', { ouid: A, desc: true, num: 10, begin: 0n, end: 0n, lastid: 0n, mtypes: [31] });
    const [entry] = page.msgs as unknown[][];
    assert.ok(entry![5] instanceof Uint8Array, 'history index 5 must stay bin');
    assert.deepEqual(Buffer.from(entry![5] as Uint8Array), Buffer.from(audio));
    const one = await b.quest('getmsg', { mid, xid: B, from: A, type: 1 });
    assert.deepEqual(Buffer.from(one.msg as Uint8Array), Buffer.from(audio), 'getmsg msg must stay bin');
  });

  it('JSON legacy audio (mtype 31) sent as bin still reads as a string (Android parses it as JSON)', async () => {
    const [A, B] = [++uidSeq, ++uidSeq];
    const a = await nativeLogin(A);
    const b = await nativeLogin(B);
    const json = '{"du":3,"rt":"héllo","sl":"fr","rl":"fr"}';
    await a.quest('sendmsg', { to: B, mid: 99n, mtype: 31, msg: new TextEncoder().encode(json), attrs: '' });
    const [push] = await b.waitForPushes('pushmsg');
    assert.equal(push!.msg, json);
  });

  it('Windows/Unreal getp2punread: mtime 0 and an empty mtypes set always sent; string-keyed maps back', async () => {
    const [A, B] = [++uidSeq, ++uidSeq];
    const a = await nativeLogin(A);
    const b = await nativeLogin(B);
    await a.quest('sendmsg', { to: B, mid: 1n, mtype: 30, msg: 'hi', attrs: '' });
    await b.waitForPushes('pushmsg');
    const answer = await b.quest('getp2punread', { uids: [A], mtime: 0, mtypes: [] });
    // C++ reads map<string, int32_t> / map<string, int64_t>: the keys must be strings.
    assert.deepEqual(Object.keys(answer.p2p as object), [String(A)]);
    assert.equal((answer.p2p as Record<string, number>)[String(A)], 1);
    assert.equal(typeof (answer.ltime as Record<string, unknown>)[String(A)], 'bigint');
  });

  it('Unity/Android history: begin, end and lastid always sent (0 = unset); all five answer keys and 8-item rows', async () => {
    const [A, B] = [++uidSeq, ++uidSeq];
    const a = await nativeLogin(A);
    await nativeLogin(B);
    await a.quest('sendmsg', { to: B, mid: 5n, mtype: 51, msg: 'x', attrs: '' });
    const page = await a.quest('getp2pmsg', { ouid: B, desc: false, num: 10, begin: 0, end: 0, lastid: 0 });
    for (const key of ['num', 'lastid', 'begin', 'end', 'msgs']) assert.ok(key in page, `answer key ${key}`);
    const [row] = page.msgs as unknown[][];
    assert.equal(row!.length, 8);
    assert.equal(row![1], 1, 'direction: sent by me');
    assert.equal(row![4], false, 'deleted is a msgpack bool (Android casts it to boolean)');
    assert.equal(typeof row![6], 'string', 'attrs is a str (Unity converts index 6 to string)');
  });
});
