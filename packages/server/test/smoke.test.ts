import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { RawClient, startTestServer, TEST_PID, TEST_SECRET, type TestServer } from '@rtm/testkit';

describe('smoke: server gate + client gate over real sockets', () => {
  let server: TestServer;
  before(async () => {
    server = await startTestServer();
  });
  after(async () => {
    await server.close();
  });

  it('*ping answers ts on both gates, TCP and WebSocket', async () => {
    const tcp = await RawClient.tcp(server.serverEndpoint);
    const ws = await RawClient.websocket(server.clientEndpoint);
    const a = await tcp.quest('*ping');
    const b = await ws.quest('*ping');
    assert.equal(typeof a.ts, 'bigint');
    assert.equal(typeof b.ts, 'bigint');
    tcp.close();
    ws.close();
  });

  it('token login, server send, client push, history', async () => {
    const backend = await RawClient.tcp(server.serverEndpoint);
    const { token } = await backend.signed('gettoken', { uid: 1002n }, TEST_PID, TEST_SECRET);
    const user = await RawClient.websocket(server.clientEndpoint);
    assert.deepEqual(await user.quest('auth', { pid: TEST_PID, uid: 1002n, token }), { ok: true });
    const mid = 0x0123456789abcdefn;
    const { mtime } = await backend.signed(
      'sendmsg',
      { from: 1001n, to: 1002n, mid, mtype: 30, msg: 'hi', attrs: '' },
      TEST_PID,
      TEST_SECRET,
    );
    assert.equal(typeof mtime, 'bigint');
    const [push] = await user.waitForPushes('pushmsg');
    assert.equal(push!.mid, mid);
    assert.deepEqual(push!.msg, { source: '', target: '', sourceText: 'hi', targetText: '' });
    const page = await user.quest('getp2pmsg', { ouid: 1001n, desc: true, num: 10 });
    assert.equal(page.num, 1);
    const entry = (page.msgs as unknown[][])[0]!;
    assert.equal(entry.length, 8);
    assert.equal(entry[1], 2); // sent by the peer
    assert.equal(entry[3], mid);
    backend.close();
    user.close();
  });
});
