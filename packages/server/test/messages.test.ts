import assert from 'node:assert/strict';
import { connect } from 'node:net';
import { after, before, describe, it } from 'node:test';
import { RTMServerClient, RtmError } from '@rtm/server-sdk';
import { RawClient, startTestServer, TEST_PID, TEST_SECRET, until, type TestServer } from '@rtm/testkit';

const BIG = 1n << 60n; // ids far above 2^53
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function rejectsWith(promise: Promise<unknown>, code: number): Promise<void> {
  await assert.rejects(promise, (err: unknown) => {
    assert.ok(err instanceof RtmError, `expected RtmError, got ${String(err)}`);
    assert.equal(err.code, code, err.message);
    return true;
  });
}

describe('server API messages through our server SDK (real server, real sockets)', () => {
  let server: TestServer;
  let sdk: RTMServerClient;
  before(async () => {
    server = await startTestServer();
    sdk = new RTMServerClient({ pid: TEST_PID, secret: TEST_SECRET, endpoint: server.serverEndpoint, autoReconnect: false });
    await sdk.connect();
  });
  after(async () => {
    await sdk.close();
    await server.close();
  });

  it('pages through 1,000 p2p messages both ways with no gap or duplicate', async () => {
    const a = BIG + 1n;
    const b = BIG + 2n;
    const sent = await Promise.all(
      Array.from({ length: 1000 }, (_, i) =>
        i % 2 === 0 ? sdk.sendMessage(51, a, b, `m${i}`, '') : sdk.sendMessage(51, b, a, `m${i}`, ''),
      ),
    );
    assert.equal(new Set(sent.map((s) => s.mid)).size, 1000);

    const collect = async (desc: boolean, uid: bigint, ouid: bigint) => {
      const ids: bigint[] = [];
      const texts: string[] = [];
      let lastid: bigint | undefined;
      let begin: bigint | undefined;
      let end: bigint | undefined;
      for (let pages = 0; pages < 200; pages++) {
        const page = await sdk.getP2PMessage(uid, ouid, desc, 20, { lastid, begin, end });
        assert.equal(page.num, page.messages.length);
        if (page.num === 0) break;
        for (const m of page.messages) {
          ids.push(m.id);
          texts.push(m.message as string);
          // direction resolved by the SDK from index 1 of the entry
          assert.ok((m.fromUid === uid && m.toId === ouid) || (m.fromUid === ouid && m.toId === uid));
        }
        lastid = page.lastid;
        if (desc) end = page.end;
        else begin = page.begin;
      }
      return { ids, texts };
    };
    const down = await collect(true, a, b);
    const up = await collect(false, b, a);
    assert.equal(down.ids.length, 1000);
    assert.equal(new Set(down.ids).size, 1000);
    for (let i = 1; i < down.ids.length; i++) assert.ok(down.ids[i]! < down.ids[i - 1]!, 'desc pages are strictly decreasing');
    assert.deepEqual([...up.ids].reverse(), down.ids, 'both directions see the same conversation');
    assert.deepEqual(new Set(up.texts), new Set(Array.from({ length: 1000 }, (_, i) => `m${i}`)));
  });

  it('clamps num to the configured cap and rejects num <= 0', async () => {
    const page = await sdk.getP2PMessage(BIG + 1n, BIG + 2n, true, 500);
    assert.equal(page.num, 20);
    await rejectsWith(sdk.getP2PMessage(BIG + 1n, BIG + 2n, true, 0), 200034);
  });

  it('begin/end windows and the mtypes filter', async () => {
    const a = 5001n;
    const b = 5002n;
    const times: bigint[] = [];
    for (let i = 0; i < 5; i++) {
      times.push((await sdk.sendMessage(i % 2 ? 52 : 51, a, b, `w${i}`, '')).mtime);
      await sleep(3);
    }
    const window = await sdk.getP2PMessage(a, b, false, 20, { begin: times[1], end: times[3] });
    assert.deepEqual(
      window.messages.map((m) => m.message),
      ['w1', 'w2', 'w3'],
    );
    const only52 = await sdk.getP2PMessage(a, b, true, 20, { mtypes: [52] });
    assert.deepEqual(
      only52.messages.map((m) => m.message),
      ['w3', 'w1'],
    );
  });

  it('getMessage, deleteMessage, then info and history no longer show it', async () => {
    const { mid } = await sdk.sendMessage(60, 7001n, 7002n, new Uint8Array([1, 2, 3]), '{"k":1}');
    const info = await sdk.getP2PMessageInfo(mid, 7001n, 7002n);
    assert.deepEqual(info.message, new Uint8Array([1, 2, 3]), 'binary bodies stay binary');
    assert.equal(info.attrs, '{"k":1}');
    await sdk.deleteP2PMessage(mid, 7001n, 7002n);
    await rejectsWith(sdk.getP2PMessageInfo(mid, 7001n, 7002n), 200070);
    await rejectsWith(sdk.deleteP2PMessage(mid, 7001n, 7002n), 200070);
    assert.equal((await sdk.getP2PMessage(7001n, 7002n, true, 10)).num, 0);
  });

  it('a resend with the same mid and content is idempotent; different content is a mid collision', async () => {
    const mid = BIG + 77n;
    const first = await sdk.sendMessage(30, 8001n, 8002n, 'same', '', { mid });
    const again = await sdk.sendMessage(30, 8001n, 8002n, 'same', '', { mid });
    assert.equal(again.mtime, first.mtime);
    await rejectsWith(sdk.sendMessage(30, 8001n, 8002n, 'different', '', { mid }), 200053);
    const page = await sdk.getP2PMessage(8001n, 8002n, true, 10);
    assert.equal(page.num, 1);
    assert.equal(page.messages[0]!.mid, mid);
  });

  it('sendMessages whose mid collides for one receiver stores and pushes nothing; a new mid reaches each once', async () => {
    const listener = new RTMServerClient({ pid: TEST_PID, secret: TEST_SECRET, endpoint: server.serverEndpoint, autoReconnect: false });
    const pushed: { to: bigint; mid: bigint }[] = [];
    try {
      await listener.connect();
      await listener.setListen({ p2p: true });
      listener.on('message', (m) => pushed.push({ to: m.toUid, mid: m.mid }));
      const [a, b, c] = [BIG + 8101n, BIG + 8102n, BIG + 8103n];
      const mid = BIG + 81n;
      await sdk.sendMessage(30, a, b, 'first', '', { mid });
      // The Python SDK gives equal mids within one millisecond: the next send reuses it.
      await rejectsWith(sdk.sendMessages(30, a, [c, b], 'second', '', { mid }), 200053);
      assert.equal((await sdk.getP2PMessage(c, a, true, 10)).num, 0, 'nothing stored for c');
      const retry = await sdk.sendMessages(30, a, [c, b], 'second', '', { mid: mid + 1n });
      await until(() => pushed.length >= 3);
      await sleep(50); // strays
      assert.deepEqual(pushed, [
        { to: b, mid },
        { to: c, mid: retry.mid },
        { to: b, mid: retry.mid },
      ]);
      assert.deepEqual(
        (await sdk.getP2PMessage(c, a, true, 10)).messages.map((m) => m.message),
        ['second'],
      );
    } finally {
      await listener.close();
    }
  });

  it('sendMessages stores one message per receiver; broadcast history', async () => {
    const { mid } = await sdk.sendMessages(30, 9001n, [9002n, 9003n, BIG + 9004n], 'to all three', '');
    for (const to of [9002n, 9003n, BIG + 9004n]) {
      const page = await sdk.getP2PMessage(to, 9001n, true, 10);
      assert.equal(page.num, 1);
      assert.equal(page.messages[0]!.mid, mid);
      assert.equal(page.messages[0]!.fromUid, 9001n);
    }
    await sdk.broadcastMessage(30, 9001n, 'hello everyone', '');
    const b = await sdk.getBroadcastMessage(1n, true, 10);
    assert.equal(b.messages[0]!.message, 'hello everyone');
    assert.equal(b.messages[0]!.fromUid, 9001n);
  });

  it('group messages: membership, history, counts', async () => {
    const gid = BIG + 300n;
    await rejectsWith(sdk.sendGroupMessage(30, 1n, gid, 'nobody home', ''), 200046);
    await sdk.addGroupMembers(gid, [1n, 2n, 3n]);
    await rejectsWith(sdk.sendGroupMessage(30, 4n, gid, 'not a member', ''), 200041);
    await sdk.sendGroupMessage(30, 1n, gid, 'g1', '');
    await sdk.sendGroupMessage(30, 2n, gid, 'g2', '');
    await sdk.sendGroupMessage(51, 2n, gid, 'g3', '');
    await sdk.sendGroupMessage(30, 3n, gid, 'g4', '');
    const page = await sdk.getGroupMessage(1n, gid, false, 10);
    assert.deepEqual(
      page.messages.map((m) => [m.fromUid, m.message]),
      [
        [1n, 'g1'],
        [2n, 'g2'],
        [2n, 'g3'],
        [3n, 'g4'],
      ],
    );
    assert.deepEqual(await sdk.getMessageNum(2, gid), { sender: 3, num: 4 });
    assert.deepEqual(await sdk.getMessageNum(2, gid, { mtypes: [51] }), { sender: 1, num: 1 });
  });

  it('rejects bad input with the spec codes and stores nothing', async () => {
    await rejectsWith(sdk.sendMessage(0, 10n, 11n, 'x', ''), 200005);
    await rejectsWith(sdk.sendMessage(128, 10n, 11n, 'x', ''), 200005);
    await rejectsWith(sdk.sendMessage(30, 10n, 11n, 'x'.repeat(20481), ''), 200030);
    await rejectsWith(sdk.sendMessage(30, 10n, 11n, 'x', 'a'.repeat(2049)), 200030);
    await rejectsWith(sdk.sendMessages(30, 10n, [], 'x', ''), 200033);
    await rejectsWith(
      sdk.sendMessages(
        30,
        10n,
        Array.from({ length: 2001 }, (_, i) => BigInt(i + 100)),
        'x',
        '',
      ),
      200032,
    );
    assert.equal((await sdk.getP2PMessage(10n, 11n, true, 10)).num, 0);

    const raw = await RawClient.tcp(server.serverEndpoint);
    try {
      await assert.rejects(raw.signed('sendmsg', { from: 10n, mtype: 30, mid: 1n, msg: 'x', attrs: '' }, TEST_PID, TEST_SECRET), {
        code: 10009,
      });
      await assert.rejects(
        raw.signed('sendmsg', { from: 'ten', to: 11n, mtype: 30, mid: 1n, msg: 'x', attrs: '' }, TEST_PID, TEST_SECRET),
        { code: 10010 },
      );
      // Ids are signed 64-bit: 2^63 is a bad parameter, not a store failure (20001).
      await assert.rejects(
        raw.signed('sendmsg', { from: 10n, to: 2n ** 63n, mtype: 30, mid: 1n, msg: 'x', attrs: '' }, TEST_PID, TEST_SECRET),
        {
          code: 10010,
        },
      );
      await assert.rejects(raw.signed('getp2pmsg', { uid: 10n, ouid: 2n ** 64n - 1n, desc: true, num: 5 }, TEST_PID, TEST_SECRET), {
        code: 10010,
      });
      // U+0000 in text the stores keep: refused alike on SQLite and PostgreSQL (200034).
      const nul = 'a\u0000b';
      await assert.rejects(raw.signed('sendmsg', { from: 10n, to: 11n, mtype: 30, mid: 7n, msg: nul, attrs: nul }, TEST_PID, TEST_SECRET), {
        code: 200034,
      });
      await raw.signed('sendmsg', { from: 12n, to: 13n, mtype: 30, mid: 7n, msg: nul, attrs: '' }, TEST_PID, TEST_SECRET); // a body may
      await assert.rejects(raw.signed('setuserinfo', { uid: 10n, oinfo: nul }, TEST_PID, TEST_SECRET), { code: 200034 });
      await assert.rejects(raw.signed('dataset', { uid: 10n, key: nul, val: 'v' }, TEST_PID, TEST_SECRET), { code: 200034 });
      await assert.rejects(raw.signed('dataset', { uid: 10n, key: 'k', val: nul }, TEST_PID, TEST_SECRET), { code: 200034 });
      await assert.rejects(raw.signed('gettoken', { uid: 0n }, TEST_PID, TEST_SECRET), { code: 200001 });
      await assert.rejects(raw.signed('gettoken', { uid: -5n }, TEST_PID, TEST_SECRET), { code: 200001 });
      await assert.rejects(raw.signed('gettoken', { uid: 1n }, 999, TEST_SECRET), { code: 200002 });
      await assert.rejects(raw.signed('gettoken', { uid: 1n }, TEST_PID, 'wrong-secret'), { code: 200002 });
      await assert.rejects(
        raw.quest('gettoken', { uid: 1n, pid: TEST_PID, salt: 5n, ts: Math.floor(Date.now() / 1000) - 3600, sign: 'X' }),
        { code: 200008 },
      );
      await assert.rejects(raw.quest('nosuchmethod', {}), { code: 20004 });
      // An exact replay is refused; the same salt with another payload is not (Python SDK, same ms).
      const salt = BigInt(Date.now()) << 14n;
      await raw.signed('sendmsg', { from: 10n, to: 11n, mtype: 30, mid: 1n, msg: 'one', attrs: '' }, TEST_PID, TEST_SECRET, salt);
      await assert.rejects(
        raw.signed('sendmsg', { from: 10n, to: 11n, mtype: 30, mid: 1n, msg: 'one', attrs: '' }, TEST_PID, TEST_SECRET, salt),
        { code: 200006 },
      );
      await raw.signed('sendmsg', { from: 10n, to: 11n, mtype: 30, mid: 2n, msg: 'two', attrs: '' }, TEST_PID, TEST_SECRET, salt);
      assert.equal((await sdk.getP2PMessage(10n, 11n, true, 10)).num, 2);
    } finally {
      raw.close();
    }
  });

  it('answers FPNN-over-HTTP with JSON, int64 ids exact, errors as 500 {code, ex}, CORS', async () => {
    const { signFields, uniqueSalt } = await import('@rtm/testkit');
    const base = `http://${server.serverEndpoint}/service`;
    const post = async (method: string, body: string, headers: Record<string, string> = {}) => {
      const res = await fetch(`${base}/${method}`, { method: 'POST', body, headers: { 'content-type': 'application/json', ...headers } });
      return { status: res.status, text: await res.text(), headers: res.headers };
    };
    const sig = (method: string) => {
      const f = signFields(method, TEST_PID, TEST_SECRET, uniqueSalt());
      return `"pid":${f.pid},"salt":${f.salt},"ts":${f.ts},"sign":"${f.sign}"`;
    };
    const sent = await post(
      'sendmsg',
      `{${sig('sendmsg')},"from":1152921504606846977,"to":1152921504606846978,"mid":1152921504606846999,"mtype":30,"msg":"via http","attrs":""}`,
      { origin: 'http://example.test' },
    );
    assert.equal(sent.status, 200, sent.text);
    assert.match(sent.text, /^\{"mtime":\d+\}$/);
    assert.equal(sent.headers.get('access-control-allow-origin'), '*');
    const page = await sdk.getP2PMessage(BIG + 1n, BIG + 2n, true, 1);
    assert.equal(page.messages[0]!.mid, BIG + 23n);
    const hist = await post('getp2pmsg', `{${sig('getp2pmsg')},"uid":1152921504606846977,"ouid":1152921504606846978,"desc":true,"num":1}`);
    assert.match(hist.text, /1152921504606846999/, 'int64 written as an exact JSON number');
    const bad = await post('sendmsg', `{${sig('sendmsg')},"from":1,"to":2}`);
    assert.equal(bad.status, 500);
    assert.deepEqual(JSON.parse(bad.text).code, 10009);
    assert.ok(JSON.parse(bad.text).ex);
    const notJson = await post('gettoken', '{not json');
    assert.equal(notJson.status, 500);
  });

  it('mtypes filters: duplicates and impossible types change nothing; 40,000 of them are still an answer', async () => {
    await sdk.broadcastMessage(51, 77n, 'typed 51', '');
    await sdk.broadcastMessage(52, 77n, 'typed 52', '');
    const raw = await RawClient.tcp(server.serverEndpoint);
    try {
      const page = async (mtypes: number[]) =>
        ((await raw.signed('getbroadcastmsg', { uid: 1n, desc: true, num: 20, mtypes }, TEST_PID, TEST_SECRET)).msgs as unknown[][]).map(
          (m) => m[5],
        );
      assert.deepEqual(await page([51]), ['typed 51']);
      assert.deepEqual(await page([51, 51, 0, 500, -3, 51]), ['typed 51']);
      assert.deepEqual(await page([500]), [], 'only impossible types: nothing matches');
      const many = Array.from({ length: 40_000 }, (_, i) => (i % 2 === 0 ? 52 : 1000 + i));
      assert.deepEqual(await page(many), ['typed 52']);
    } finally {
      raw.close();
    }
  });

  it('a request URL that cannot be parsed is answered 400 on both gates, and the server stays up', async () => {
    // Raw request lines: fetch would refuse to send them.
    const raw = (endpoint: string, target: string) =>
      new Promise<string>((resolve, reject) => {
        const [host, port] = endpoint.split(':');
        const socket = connect(Number(port), host!, () => socket.write(`GET ${target} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n`));
        let text = '';
        socket.on('data', (d) => {
          text += d.toString();
          // The answer is kept alive (the bridge answers Keep-Alive): done at the end of its JSON body.
          if (/\r\n\r\n\{.*\}$/s.test(text)) {
            socket.destroy();
            resolve(text);
          }
        });
        socket.on('end', () => resolve(text));
        socket.on('error', reject);
      });
    for (const endpoint of [server.serverEndpoint, server.clientEndpoint]) {
      for (const target of ['/service/%E0%A4%A', 'http://[::1/service/x']) {
        const answer = await raw(endpoint, target);
        assert.match(answer, /^HTTP\/1\.1 400 /, `${endpoint} ${target}: ${answer}`);
        assert.match(answer, /"code":20010/);
      }
    }
    assert.deepEqual(await sdk.getOnlineUsers([1n]), []);
  });
});

describe('durability', () => {
  it('dedupes a resend after a restart on the same data directory', async () => {
    const first = await startTestServer({}, { keepData: true });
    const dataDir = first.dataDir;
    const mid = BIG + 5n;
    let sdk = new RTMServerClient({ pid: TEST_PID, secret: TEST_SECRET, endpoint: first.serverEndpoint, autoReconnect: false });
    await sdk.connect();
    const original = await sdk.sendMessage(30, 1n, 2n, 'persisted', '', { mid });
    await sdk.close();
    await first.close();

    const second = await startTestServer({}, { dataDir });
    try {
      sdk = new RTMServerClient({ pid: TEST_PID, secret: TEST_SECRET, endpoint: second.serverEndpoint, autoReconnect: false });
      await sdk.connect();
      const again = await sdk.sendMessage(30, 1n, 2n, 'persisted', '', { mid });
      assert.equal(again.mtime, original.mtime);
      assert.equal((await sdk.getP2PMessage(1n, 2n, true, 10)).num, 1);
      await sdk.close();
    } finally {
      await second.close();
      const { rm } = await import('node:fs/promises');
      await rm(dataDir, { recursive: true, force: true });
    }
  });
});
