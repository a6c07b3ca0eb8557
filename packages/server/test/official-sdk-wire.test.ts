import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { Payload, RtmError } from '@rtm/fpnn';
import { RawClient, startTestServer, TEST_PID, TEST_SECRET, type TestServer } from '@rtm/testkit';

// Quests exactly as official SDKs build them where they differ from the spec (other key names,
// keys left out, one id where the spec has a list), and what those SDKs then read from the answers
// and pushes. Each test names the SDK file the wire form comes from (repository and path;
// reference only, nothing of it is copied here).

const BIG = 1n << 58n; // ids far above 2^53, as the SDKs' int64 ids may be

async function rejectsCode(p: Promise<unknown>, code: number): Promise<void> {
  await assert.rejects(p, (err: { code?: number; message?: string }) => {
    assert.equal(err.code, code, err.message);
    return true;
  });
}

describe('official SDK wire forms', () => {
  let server: TestServer;
  let backend: RawClient;
  const raws: RawClient[] = [];
  let seq = 0n;
  const next = (): bigint => BIG + ++seq;
  const call = (method: string, payload: Payload): Promise<Payload> => backend.signed(method, payload, TEST_PID, TEST_SECRET);
  const login = async (uid: bigint): Promise<RawClient> => {
    const c = await RawClient.loggedIn(server.clientEndpoint, backend, uid);
    raws.push(c);
    return c;
  };

  before(async () => {
    server = await startTestServer();
    backend = await RawClient.tcp(server.serverEndpoint);
  });
  after(async () => {
    for (const c of raws) c.close();
    backend.close();
    await server.close();
  });

  it('client kickout {ce}: a user closes their other sessions at that gate, never the calling one', async () => {
    // highras/rtm-client-sdk-android rtmSdk/src/main/java/com/rtmsdk/RTMSystem.java kickout(endpoint),
    // highras/rtm-client-sdk-unity Assets/Plugins/rtm/RTMClient.System.cs Kickout(endpoint),
    // highras/rtm-client-sdk-objc Rtm/Rtm/Normal/RTMClient+User.m kickoutWithEndPoint: all send the
    // client-gate quest `kickout {ce: str}` ("multi-login only, cannot kick yourself") and expect
    // `{}`. The server did not know the method (20004).
    const uid = next();
    const me = await login(uid);
    const other = await login(uid);
    assert.deepEqual(await me.quest('kickout', { ce: '203.0.113.9:13321' }), {}, 'another gate: nobody here');
    await assert.rejects(
      me.quest('kickout', { ce: 'x'.repeat(100_000) }),
      (err: RtmError) => err.code === 200034,
      'no endpoint is that long',
    );
    assert.deepEqual(await other.quest('getservertime', {}).then((a) => typeof a.mts), 'bigint', 'still logged in');
    assert.deepEqual(await me.quest('kickout', { ce: server.clientEndpoint }), {});
    await other.closed;
    assert.deepEqual(other.pushes, [{ method: 'kickout', payload: {}, oneway: true }]);
    assert.deepEqual(me.pushes, []);
    assert.equal(typeof (await me.quest('getservertime', {})).mts, 'bigint', 'the calling session stays');
    // Android passes a null endpoint through (`quest.param("ce", null)`): nil, every other session.
    const third = await login(uid);
    assert.deepEqual(await me.quest('kickout', { ce: null }), {});
    await third.closed;
    assert.deepEqual(me.pushes, []);
  });

  it('getroomcount {rid}: one room, answered {cn: int} (older Android SDK)', async () => {
    // highras/rtm-client-sdk-android rtmSdk/src/main/java/com/rtmsdk/RTMRoom.java getRoomCount(roomId)
    // sends `getroomcount {rid: long}` and reads `answer.wantInt("cn")`. Newer SDKs (Unity, objc,
    // browser, newer Android) send `{rids}` and read a map. The server required `rids` (10009).
    const rid = next();
    const [a, b] = [await login(next()), await login(next())];
    for (const c of [a, b]) assert.deepEqual(await c.quest('enterroom', { rid }), {});
    assert.deepEqual(await a.quest('getroomcount', { rid }), { cn: 2 });
    assert.deepEqual(await a.quest('getroomcount', { rid: rid + 1n }), { cn: 0 });
    assert.deepEqual(await a.quest('getroomcount', { rids: [rid] }), { cn: { [rid.toString()]: 2 } }, 'the list form is unchanged');
    await rejectsCode(a.quest('getroomcount', {}), 10009);
  });

  it('getunread {clean}: the Windows SDK spells `clear` as `clean`', async () => {
    // highras/rtm-client-sdk-windows RTCSDK/RTCSDK/RTMClient.cpp RTMClient::GetUnread(bool clean)
    // sends `getunread {clean: bool}`; every other SDK sends `clear`. The server ignored `clean`:
    // the call "succeeded" and cleared nothing.
    const [from, to] = [next(), next()];
    const receiver = await login(to);
    await call('sendmsg', { mtype: 30, from, to, mid: next(), msg: 'hi', attrs: '' });
    await receiver.waitForPushes('pushmsg');
    assert.deepEqual(await receiver.quest('getunread', { clean: true }), { p2p: [from], group: [] });
    assert.deepEqual(await receiver.quest('getunread', { clean: false }), { p2p: [], group: [] }, 'cleared by `clean: true`');
  });

  it('server getgroupmsg / getroommsg / getbroadcastmsg without `uid` (PHP, older Node and Java server SDKs)', async () => {
    // highras/rtm-server-sdk-php src/RTMServerClient.php getGroupMessage / getRoomMessage /
    // getBroadcastMessage send no `uid` (only getP2PMessage does), nor do older versions of
    // highras/rtm-server-sdk-nodejs src/rtm/RTMClient.js and highras/rtm-server-sdk-java
    // src/com/rtm/RTMClient.java. The server required it (10009); no reader is needed for these
    // conversations. PHP reads num, lastid, begin, end and the 8 items of each entry.
    const [from, gid, rid] = [next(), next(), next()];
    const page = { num: 10, desc: true, begin: 0, end: 0, lastid: 0, mtypes: [] };
    assert.deepEqual(await call('addgroupmembers', { gid, uids: [from] }), {});
    assert.deepEqual(await call('addroommember', { rid, uid: from }), {});
    await call('sendgroupmsg', { mtype: 51, from, gid, mid: next(), msg: 'g', attrs: '' });
    await call('sendroommsg', { mtype: 51, from, rid, mid: next(), msg: 'r', attrs: '' });
    await call('broadcastmsg', { mtype: 51, from, mid: next(), msg: 'b', attrs: '' });
    for (const [method, target, body] of [
      ['getgroupmsg', { gid }, 'g'],
      ['getroommsg', { rid }, 'r'],
      ['getbroadcastmsg', {}, 'b'],
    ] as const) {
      const answer = await call(method, { ...target, ...page });
      assert.deepEqual(Object.keys(answer).sort(), ['begin', 'end', 'lastid', 'msgs', 'num'], method);
      const rows = answer.msgs as unknown[][];
      assert.ok(rows.length >= 1, method);
      assert.equal(rows[0]!.length, 8, method);
      assert.equal(rows[0]![5], body, method);
    }
  });

  it('kickoutroom is oneway with `rid` as int64 (Android casts it with `(long) quest.get("rid")`)', async () => {
    // highras/rtm-client-sdk-android rtmSdk/src/main/java/com/rtmsdk/RTMQuestProcessor.java
    // kickoutRoom: `(long) quest.get("rid")` only works on a java.lang.Long, which the FPNN Java
    // unpacker makes of msgpack int64 (smaller widths become Integer): a small rid must go out as
    // int64 too. A regression guard.
    const [uid, rid] = [next(), 4242n];
    const c = await login(uid);
    assert.deepEqual(await call('addroommember', { rid, uid }), {});
    assert.deepEqual(await call('delroommember', { rid, uid }), {});
    const [push] = await c.waitForPushes('kickoutroom');
    assert.equal(typeof push!.rid, 'bigint', 'rid must be a msgpack int64');
    assert.equal(push!.rid, rid);
    assert.equal(c.pushes.find((p) => p.method === 'kickoutroom')!.oneway, true);
  });
});
