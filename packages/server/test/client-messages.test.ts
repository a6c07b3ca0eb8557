import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { RTMClient, RtmError } from '@rtm/client-sdk';
import type { Payload } from '@rtm/fpnn';
import { RTMServerClient } from '@rtm/server-sdk';
import { RawClient, startTestServer, TEST_PID, TEST_SECRET, type TestServer } from '@rtm/testkit';
import type { SqliteStore } from '../src/store/sqlite.js';

// client-api.md §3.4 on the real server through the client SDK: getmsg (who may read which
// message, both readings of a p2p `xid`) and delmsg (only one's own, once).

const P2P = 1;
const GROUP = 2;
const ROOM = 3;

async function rejectsWith(promise: Promise<unknown>, code: number): Promise<void> {
  await assert.rejects(promise, (err: unknown) => err instanceof RtmError && err.code === code, `expected ${code}`);
}

describe('client getmsg / delmsg', () => {
  let server: TestServer;
  let backend: RTMServerClient;
  const A = 2n ** 60n + 1n;
  const B = 2n ** 60n + 2n;
  const C = 2n ** 60n + 3n;
  const G = 2n ** 61n + 1n;
  const R = 2n ** 61n + 2n;
  const clients: RTMClient[] = [];
  let a: RTMClient, b: RTMClient, c: RTMClient;

  const login = async (uid: bigint): Promise<RTMClient> => {
    const client = new RTMClient({ endpoint: server.clientEndpoint, pid: TEST_PID, autoReconnect: false });
    clients.push(client);
    assert.deepEqual(await client.login(uid, await backend.getToken(uid)), { ok: true });
    return client;
  };

  before(async () => {
    server = await startTestServer();
    backend = new RTMServerClient({ pid: TEST_PID, secret: TEST_SECRET, endpoint: server.serverEndpoint, autoReconnect: false });
    await backend.connect();
    await backend.addGroupMembers(G, [A, B]);
    [a, b, c] = [await login(A), await login(B), await login(C)];
  });
  after(async () => {
    for (const client of clients) client.close();
    await backend.close();
    await server.close();
  });

  it('p2p: the sender and the receiver read it (xid = the receiver, or for the receiver the peer); others get 200021', async () => {
    const sent = await a.sendMessage(B, 30, 'for B only', '{"k":1}');
    const want = { mtype: 30, message: 'for B only', attrs: '{"k":1}', mtime: sent.mtime };
    const read = async (client: RTMClient, xid: bigint) => {
      const { id, ...rest } = await client.getMessage(A, sent.mid, xid, P2P);
      assert.equal(typeof id, 'bigint');
      return rest;
    };
    assert.deepEqual(await read(a, B), want, 'the sender, xid = the peer = the receiver');
    assert.deepEqual(await read(b, B), want, 'the receiver, xid = the receiver (server-api.md §3.3)');
    assert.deepEqual(await read(b, A), want, 'the receiver, xid = the peer (client-api.md §3.4)');
    await rejectsWith(c.getMessage(A, sent.mid, B, P2P), 200021);
    await rejectsWith(c.getMessage(A, sent.mid, A, P2P), 200070); // C's own conversation with A: no such message
    await rejectsWith(a.getMessage(A, sent.mid, C, P2P), 200070); // the sender, the wrong peer
  });

  it('group and room: members only (200041 / 200040)', async () => {
    const g = await a.sendGroupMessage(G, 40, 'group note');
    assert.equal((await b.getMessage(A, g.mid, G, GROUP)).message, 'group note');
    await rejectsWith(c.getMessage(A, g.mid, G, GROUP), 200041);

    await a.enterRoom(R);
    const r = await a.sendRoomMessage(R, 30, 'room note');
    await rejectsWith(b.getMessage(A, r.mid, R, ROOM), 200040);
    await b.enterRoom(R);
    assert.equal((await b.getMessage(A, r.mid, R, ROOM)).message, 'room note');
  });

  it('delmsg: only my own (200021), then it is gone for everyone (200070), and a second delete is 200070', async () => {
    const sent = await a.sendMessage(B, 30, 'regret');
    await rejectsWith(b.deleteMessage(A, sent.mid, B, P2P), 200021);
    assert.equal((await b.getMessage(A, sent.mid, B, P2P)).message, 'regret', 'a refused delete deletes nothing');
    await a.deleteMessage(A, sent.mid, B, P2P);
    await rejectsWith(b.getMessage(A, sent.mid, B, P2P), 200070);
    await rejectsWith(a.getMessage(A, sent.mid, B, P2P), 200070);
    await rejectsWith(a.deleteMessage(A, sent.mid, B, P2P), 200070);
    const page = await b.getP2PMessage(A, true, 10);
    assert.ok(!page.messages.some((m) => m.mid === sent.mid), 'history no longer shows it');
  });

  it('a type filter reads at most 10,000 messages a page: a rare type gives short pages whose lastid goes on', async () => {
    // 12,000 messages of mtype 51 in a group, three of mtype 40 among them.
    const gid = 2n ** 61n + 77n;
    await backend.addGroupMembers(gid, [A]);
    const rare = new Set([50, 6000, 11990]);
    (server.services.store as SqliteStore).bulkInsert(
      Array.from({ length: 12_000 }, (_, k) => ({
        pid: TEST_PID,
        kind: GROUP,
        from: B,
        to: gid,
        mid: BigInt(k + 1),
        mtype: rare.has(k + 1) ? 40 : 51,
        msg: `m${k + 1}`,
        attrs: '',
      })),
    );
    const pages: bigint[][] = [];
    let lastid: bigint | undefined;
    for (;;) {
      const page = await a.getGroupMessage(gid, true, 20, undefined, undefined, lastid, [40]);
      if (page.num === 0) break;
      pages.push(page.messages.map((m) => m.mid));
      assert.ok(pages.length < 5, 'paging must end');
      lastid = page.lastid;
    }
    // The newest 10,000 rows hold two; the 2,000 older ones the third.
    assert.deepEqual(pages, [[11990n, 6000n], [50n]]);
    // Unfiltered and common-type pages are full as ever.
    assert.equal((await a.getGroupMessage(gid, true, 20, undefined, undefined, undefined, [51])).num, 20);
    assert.equal((await a.getGroupMessage(gid, false, 20)).num, 20);
  });

  it('bad keys: type outside 1–4 (200034), missing key (10009)', async () => {
    await rejectsWith(a.getMessage(A, 1n, B, 5), 200034);
    await rejectsWith(a.sendQuest('getmsg', { from: A, mid: 1n, type: 1 }), 10009);
  });
});

describe('message bodies as clients read them (client-api.md §7), and a backend note to oneself', () => {
  let server: TestServer;
  let backend: RawClient;
  const clients: RawClient[] = [];
  const A = 2n ** 60n + 11n;
  const B = 2n ** 60n + 12n;
  const signed = (method: string, payload: Payload) => backend.signed(method, payload, TEST_PID, TEST_SECRET);
  const bytes = (text: string) => new TextEncoder().encode(text);
  /** Bytes compared as bytes, whatever view the decoder made of them. */
  const plain = (value: unknown) => (value instanceof Uint8Array ? Buffer.from(value) : value);

  const login = async (uid: bigint): Promise<RawClient> => {
    const client = await RawClient.websocket(server.clientEndpoint);
    clients.push(client);
    const { token } = await signed('gettoken', { uid });
    assert.deepEqual(await client.quest('auth', { pid: TEST_PID, uid, token }), { ok: true });
    return client;
  };

  before(async () => {
    server = await startTestServer();
    backend = await RawClient.tcp(server.serverEndpoint);
  });
  after(async () => {
    for (const client of clients) client.close();
    backend.close();
    await server.close();
  });

  it('text types (chat 30, audio 31, cmd 32) sent as bin reach a client as strings; other types stay bin; a backend gets them as sent', async () => {
    const b = await login(B);
    const sent = [
      { mid: 1n, mtype: 30, msg: bytes('chat') },
      { mid: 2n, mtype: 31, msg: bytes('{"du":1}') },
      { mid: 3n, mtype: 32, msg: bytes('cmd') },
      { mid: 4n, mtype: 60, msg: new Uint8Array([0, 255]) },
    ];
    for (const m of sent) await signed('sendmsg', { from: A, to: B, ...m, attrs: '' });
    const pushes = await b.waitForPushes('pushmsg', sent.length);
    const chatMap = { source: '', target: '', sourceText: 'chat', targetText: '' };
    assert.deepEqual(
      pushes.map((p) => plain(p.msg)),
      [chatMap, '{"du":1}', 'cmd', Buffer.from([0, 255])],
      'pushes: chat as the map, the other text types as strings',
    );
    const asClientReads = ['chat', '{"du":1}', 'cmd', Buffer.from([0, 255])];
    const page = (await b.quest('getp2pmsg', { ouid: A, desc: false, num: 10 })) as { msgs: unknown[][] };
    assert.deepEqual(
      page.msgs.map((e) => plain(e[5])),
      asClientReads,
      'history',
    );
    for (const [i, m] of sent.entries()) {
      const one = await b.quest('getmsg', { from: A, mid: m.mid, xid: A, type: 1 });
      assert.deepEqual(plain(one.msg), asClientReads[i], `getmsg mtype ${m.mtype}`);
    }
    const list = (await b.quest('getp2pconversationlist', { mtypes: [32] })) as { msgs: unknown[][] };
    assert.deepEqual(
      list.msgs.map((e) => e[5]),
      ['cmd'],
      'conversation list',
    );
    const serverPage = (await signed('getp2pmsg', { uid: B, ouid: A, desc: false, num: 10 })) as { msgs: unknown[][] };
    assert.deepEqual(
      serverPage.msgs.map((e) => plain(e[5])),
      sent.map((m) => plain(m.msg)),
      'the server gate: bodies as sent',
    );
  });

  it('a backend p2p message from a user to that same user is pushed to the user (server-api.md §2.1)', async () => {
    const a = await login(A);
    await signed('sendmsg', { from: A, to: A, mid: 10n, mtype: 51, msg: 'note to self', attrs: '' });
    const [push] = await a.waitForPushes('pushmsg');
    assert.deepEqual(push, { from: A, to: A, mtype: 51, mid: 10n, msg: 'note to self', attrs: '', mtime: push!.mtime });
  });
});
