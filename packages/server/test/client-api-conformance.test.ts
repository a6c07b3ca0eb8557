import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { Payload } from '@rtm/fpnn';
import { RawClient, startTestServer, TEST_PID, TEST_SECRET, type TestServer } from '@rtm/testkit';

// Line-by-line conformance with spec/client-api.md (and server-api.md §4 listen, §6 pushes): each
// case is a point where the server once read the spec differently. Real server, raw FPNN frames.

let nextUid = 5n << 56n;
const newUid = (): bigint => ++nextUid;
let nextMid = 5n << 60n;
const newMid = (): bigint => ++nextMid;

describe('client-api.md conformance', () => {
  let server: TestServer;
  let backend: RawClient;
  const conns: RawClient[] = [];
  const signed = (method: string, payload: Payload) => backend.signed(method, payload, TEST_PID, TEST_SECRET);

  async function login(uid: bigint): Promise<RawClient> {
    const c = await RawClient.loggedIn(server.clientEndpoint, backend, uid);
    conns.push(c);
    return c;
  }

  before(async () => {
    server = await startTestServer({ limits: { maxListenItems: 3 } });
    backend = await RawClient.tcp(server.serverEndpoint);
  });
  after(async () => {
    for (const c of conns) c.close();
    backend.close();
    await server.close();
  });

  it('§7: a file message (40–50) sent as bin reaches clients as a JSON string: push, history, getmsg, conversation list', async () => {
    // client-api.md §7: `msg` of mtypes 40..50 is a JSON string in client pushes and "same" in
    // history / getmsg. Android reads it with `(String) msg` and keeps "" for a bin body.
    const [from, to] = [newUid(), newUid()];
    const reader = await login(to);
    const body = JSON.stringify({ url: 'https://files.example/a.png', size: 3 });
    const mid = newMid();
    await signed('sendmsg', { from, to, mid, mtype: 40, msg: new TextEncoder().encode(body), attrs: '{"rtm":{},"custom":""}' });

    const [push] = await reader.waitForPushes('pushmsg');
    assert.equal(push!.msg, body, 'pushmsg msg');
    const page = await reader.quest('getp2pmsg', { ouid: from, desc: true, num: 10 });
    assert.equal((page.msgs as unknown[][])[0]![5], body, 'history index 5');
    const one = await reader.quest('getmsg', { from, mid, xid: to, type: 1 });
    assert.equal(one.msg, body, 'getmsg msg');
    const list = await reader.quest('getp2pconversationlist', {});
    assert.equal((list.msgs as unknown[][])[0]![5], body, 'conversation list last message');
  });

  it('server-api.md §4: a setlisten with lists replaces all four (absent = empty), so the listen bound counts only the lists given', async () => {
    // "the presence of any list key replaces the four lists (absent lists = empty)": holding the
    // bound (3 uids), a setlisten of one gid leaves one item, not four.
    const listener = await RawClient.tcp(server.serverEndpoint);
    conns.push(listener);
    const lsigned = (method: string, payload: Payload) => listener.signed(method, payload, TEST_PID, TEST_SECRET);
    assert.deepEqual(await lsigned('addlisten', { uids: [1n, 2n, 3n] }), {});
    assert.deepEqual(await lsigned('setlisten', { gids: [9n] }), {});
    const [conn] = [...(server.services.listeners.listeners(TEST_PID) ?? [])];
    const listen = conn!.session!.listen;
    assert.deepEqual([listen.gids.size, listen.uids.size], [1, 0]);
    // Still bounded: more than the bound in the lists given is refused.
    await assert.rejects(lsigned('setlisten', { gids: [1n, 2n], uids: [3n, 4n] }), { code: 200032 });
  });
});
