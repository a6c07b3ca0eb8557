import assert from 'node:assert/strict';
import { request } from 'node:http';
import { connect } from 'node:net';
import { describe, it } from 'node:test';
import { encodePayload, encodeQuest, Flag, FrameDecoder, json, StrBytes, type Payload } from '@rtm/fpnn';
import { RTMClient, type P2PMessage } from '@rtm/client-sdk';
import { RTMServerClient } from '@rtm/server-sdk';
import { RawClient, signFields, startTestServer, TEST_PID, TEST_SECRET, uniqueSalt, until, type TestServer } from '@rtm/testkit';
import { PostgresStore } from '../src/store/postgres.js';
import { dropSchema, freshSchema, PG_URL, postgresUnreachable } from './helpers/postgres.js';

// Text, encoding and size edges end to end (real server, raw FPNN, both SDKs, the HTTP bridge):
// limits counted in UTF-8 bytes, U+0000, lone surrogates that JSON can spell (`\ud800`), a UTF-8
// BOM, malformed `\u` escapes, str vs bin bodies byte for byte, on SQLite and on PostgreSQL
// (when reachable, else skipped unless CI=true). errors-and-limits.md §3, client-api.md §7,
// server-api.md §2–4, fpnn.md §2 and §7, README "Bodies", "JSON", "HTTP bridge".

const CI = process.env['CI'] === 'true';
const unreachable = await postgresUnreachable();

interface StoreKind {
  name: string;
  skip?: string;
  /** startTestServer's options for this store, and what removes its data afterwards. */
  prepare(): { options: Parameters<typeof startTestServer>[1]; cleanup(): Promise<void> };
}

const sqlite: StoreKind = { name: 'SQLite', prepare: () => ({ options: {}, cleanup: async () => {} }) };
const postgres: StoreKind = {
  name: 'PostgreSQL',
  skip: unreachable && !CI ? unreachable : undefined,
  prepare() {
    if (unreachable) assert.fail(`${unreachable} (required when CI=true)`);
    const schema = freshSchema('text_edges');
    return {
      options: { makeStore: () => new PostgresStore({ url: PG_URL, schema, poolSize: 4 }) },
      cleanup: () => dropSchema(schema),
    };
  },
};

interface Setup {
  server: TestServer;
  backend: RTMServerClient;
  /** A raw server-gate connection: exact msgpack types in, exact types out. */
  raw: RawClient;
  signed(method: string, payload: Payload): Promise<Payload>;
  /** `signed`, resolving to the error code when refused. */
  code(method: string, payload: Payload): Promise<number | Payload>;
  login(uid: bigint): Promise<RTMClient>;
  close(): Promise<void>;
}

async function open(kind: StoreKind = sqlite): Promise<Setup> {
  const { options, cleanup } = kind.prepare();
  const server = await startTestServer({ clientCallsPerSecond: 0 }, options);
  const backend = new RTMServerClient({ pid: TEST_PID, secret: TEST_SECRET, endpoint: server.serverEndpoint, autoReconnect: false });
  await backend.connect();
  const raw = await RawClient.tcp(server.serverEndpoint);
  const clients: RTMClient[] = [];
  const signed = (method: string, payload: Payload): Promise<Payload> => raw.signed(method, payload, TEST_PID, TEST_SECRET);
  return {
    server,
    backend,
    raw,
    signed,
    code: (method, payload) =>
      signed(method, payload).then(
        (answer) => answer,
        (err: { code?: number }) => err.code ?? -1,
      ),
    async login(uid) {
      const client = new RTMClient({ endpoint: server.clientEndpoint, pid: TEST_PID, autoReconnect: false });
      assert.deepEqual(await client.login(uid, await backend.getToken(uid)), { ok: true });
      clients.push(client);
      return client;
    },
    async close() {
      for (const c of clients) c.close();
      raw.close();
      await backend.close();
      await server.close();
      await cleanup();
    },
  };
}

/** The signature fields of a server-gate quest, as JSON members (the ids as bare numbers). */
function jsonSignature(method: string): string {
  const s = signFields(method, TEST_PID, TEST_SECRET, uniqueSalt());
  return `"pid":${String(s['pid'])},"salt":${String(s['salt'])},"ts":${String(s['ts'])},"sign":"${String(s['sign'])}"`;
}

/** `POST /service/<method>` with `body` exactly as given (bytes or text); the answer's status and JSON. */
function post(
  server: TestServer,
  method: string,
  body: string | Uint8Array,
  headers: Record<string, string> = {},
): Promise<{ status: number; answer: Payload; headers: Record<string, unknown> }> {
  const at = server.serverEndpoint.lastIndexOf(':');
  return new Promise((resolve, reject) => {
    const req = request(
      {
        host: server.serverEndpoint.slice(0, at),
        port: Number(server.serverEndpoint.slice(at + 1)),
        path: `/service/${method}`,
        method: 'POST',
        headers: { 'Content-Type': 'application/json', ...headers },
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () =>
          resolve({ status: res.statusCode!, answer: json.parse(Buffer.concat(chunks).toString('utf8')) as Payload, headers: res.headers }),
        );
      },
    );
    req.on('error', reject);
    req.end(body);
  });
}

/** A signed quest as an FPNN JSON frame (flag 0x40) over TCP with `payload` bytes exactly as given. */
function jsonFrame(server: TestServer, method: string, payload: Uint8Array): Promise<{ ok: boolean; answer: Payload }> {
  const at = server.serverEndpoint.lastIndexOf(':');
  return new Promise((resolve, reject) => {
    const socket = connect(Number(server.serverEndpoint.slice(at + 1)), server.serverEndpoint.slice(0, at), () =>
      socket.write(encodeQuest(method, payload, Flag.JSON, false, 1)),
    );
    const decoder = new FrameDecoder();
    socket.on('data', (chunk) => {
      for (const frame of decoder.push(chunk)) {
        if (frame.kind !== 'answer') continue;
        resolve({ ok: frame.ok, answer: json.parse(Buffer.from(frame.payload).toString('utf8')) as Payload });
        socket.destroy();
      }
    });
    socket.on('error', reject);
  });
}

/** The payload bytes of the answer to a signed msgpack quest over TCP, exactly as the server wrote them. */
function answerBytes(server: TestServer, method: string, payload: Payload): Promise<Uint8Array> {
  const at = server.serverEndpoint.lastIndexOf(':');
  const quest = { ...payload, ...signFields(method, TEST_PID, TEST_SECRET, uniqueSalt()) };
  return new Promise((resolve, reject) => {
    const socket = connect(Number(server.serverEndpoint.slice(at + 1)), server.serverEndpoint.slice(0, at), () =>
      socket.write(encodeQuest(method, encodePayload(Flag.MSGPACK, quest), Flag.MSGPACK, false, 1)),
    );
    const decoder = new FrameDecoder();
    socket.on('data', (chunk) => {
      for (const frame of decoder.push(chunk)) {
        if (frame.kind !== 'answer') continue;
        resolve(frame.payload);
        socket.destroy();
      }
    });
    socket.on('error', reject);
  });
}

const utf8 = (s: string): Uint8Array => new TextEncoder().encode(s);
const codePoints = (s: unknown): string[] => [...String(s)].map((c) => c.codePointAt(0)!.toString(16));

for (const kind of [sqlite, postgres]) {
  describe(`text edges on both stores (${kind.name})`, { skip: kind.skip }, () => {
    it('a lone surrogate spelled in JSON (\\ud800) is kept as one U+FFFD alike, and a resend of it is acknowledged, not 200053', async () => {
      // JSON can spell a half of a surrogate pair that no UTF-8 can hold. It reached the stores as
      // is: SQLite kept ill-formed UTF-8 (read back as three U+FFFD), PostgreSQL one U+FFFD, and the
      // SDK's resend of the same quest (same mid, same content) was refused with 200053, as the
      // stored body no longer equalled the one resent.
      const s = await open(kind);
      try {
        const client = await s.login(2n);
        const pushes: P2PMessage[] = [];
        client.on('message', (m) => pushes.push(m));
        const body = `{${jsonSignature('sendmsg')},"from":1,"to":2,"mid":700,"mtype":30,"msg":"a\\ud800b","attrs":"x\\udc00"}`;
        const first = await post(s.server, 'sendmsg', body);
        assert.equal(first.status, 200, JSON.stringify(first.answer));
        const again = await post(s.server, 'sendmsg', `{${jsonSignature('sendmsg')},${body.slice(body.indexOf('"from"'))}`);
        assert.equal(again.status, 200, `resend refused: ${JSON.stringify(again.answer)}`);
        assert.equal(again.answer['mtime'], first.answer['mtime']);

        const stored = await s.signed('getmsg', { from: 1n, xid: 2n, mid: 700n, type: 1 });
        assert.deepEqual([stored['msg'], stored['attrs']], ['a\ufffdb', 'x\ufffd']);
        const seen = await client.getMessage(1n, 700n, 2n, 1);
        assert.deepEqual([seen.message, seen.attrs], ['a\ufffdb', 'x\ufffd']);
        await until(() => pushes.length === 1);
        assert.deepEqual([pushes[0]!.message, pushes[0]!.attrs], ['a\ufffdb', 'x\ufffd']);
        assert.equal((await client.getP2PMessage(1n, true, 10)).messages.length, 1, 'stored once');
      } finally {
        await s.close();
      }
    });

    it('lone surrogates in info and key-value data over JSON are one U+FFFD alike on both stores', async () => {
      const s = await open(kind);
      try {
        const info = await post(s.server, 'setuserinfo', `{${jsonSignature('setuserinfo')},"uid":1,"oinfo":"x\\udfffy","pinfo":"\\ud83d"}`);
        assert.equal(info.status, 200, JSON.stringify(info.answer));
        assert.deepEqual(await s.backend.getUserInfo(1n), { oinfo: 'x\ufffdy', pinfo: '\ufffd' });
        const data = await post(s.server, 'dataset', `{${jsonSignature('dataset')},"uid":1,"key":"k\\ud800","val":"v\\udbff"}`);
        assert.equal(data.status, 200, JSON.stringify(data.answer));
        // The key is the one any SDK spells (msgpack never carries a lone surrogate).
        assert.equal(await s.backend.dataGet(1n, 'k\ufffd'), 'v\ufffd');
      } finally {
        await s.close();
      }
    });

    it('U+0000: a body keeps it (str and bin, byte for byte); attrs, info and data refuse it with 200034 and store nothing', async () => {
      const s = await open(kind);
      try {
        const client = await s.login(2n);
        const allBytes = Uint8Array.from({ length: 256 }, (_, i) => i);
        await s.signed('sendmsg', { from: 1n, to: 2n, mid: 1n, mtype: 30, msg: 'a\u0000b😀', attrs: '' });
        await s.signed('sendmsg', { from: 1n, to: 2n, mid: 2n, mtype: 80, msg: allBytes, attrs: '{"k":"é"}' });
        await s.signed('sendmsg', { from: 1n, to: 2n, mid: 3n, mtype: 80, msg: '', attrs: '' });
        await s.signed('sendmsg', { from: 1n, to: 2n, mid: 4n, mtype: 80, msg: new Uint8Array(0), attrs: '' });

        const m1 = await s.signed('getmsg', { from: 1n, xid: 2n, mid: 1n, type: 1 });
        assert.equal(m1['msg'], 'a\u0000b😀');
        const m2 = await s.signed('getmsg', { from: 1n, xid: 2n, mid: 2n, type: 1 });
        assert.ok(m2['msg'] instanceof Uint8Array, 'bin stays bin');
        assert.deepEqual([...m2['msg']], [...allBytes]);
        assert.equal(m2['attrs'], '{"k":"é"}');
        const m4 = await s.signed('getmsg', { from: 1n, xid: 2n, mid: 4n, type: 1 });
        assert.ok(m4['msg'] instanceof Uint8Array && m4['msg'].length === 0, 'an empty bin stays an empty bin');
        const page = await s.signed('getp2pmsg', { uid: 2n, ouid: 1n, desc: false, num: 10 });
        const rows = page['msgs'] as unknown[][];
        assert.deepEqual(
          rows.map((r) => (r[5] instanceof Uint8Array ? ['bin', [...r[5]]] : ['str', r[5]])),
          [
            ['str', 'a\u0000b😀'],
            ['bin', [...allBytes]],
            ['str', ''],
            ['bin', []],
          ],
        );
        const history = await client.getP2PMessage(1n, false, 10);
        assert.equal(history.messages[0]!.message, 'a\u0000b😀');
        assert.deepEqual([...(history.messages[1]!.message as Uint8Array)], [...allBytes]);

        // Text columns: refused alike (PostgreSQL's text cannot hold U+0000), nothing half stored.
        assert.equal(await s.code('sendmsg', { from: 1n, to: 2n, mid: 5n, mtype: 30, msg: 'x', attrs: 'a\u0000' }), 200034);
        assert.equal(await s.code('setuserinfo', { uid: 1n, oinfo: 'ok', pinfo: '\u0000' }), 200034);
        assert.equal(await s.code('setgroupinfo', { gid: 1n, oinfo: '\u0000' }), 200034);
        assert.equal(await s.code('setroominfo', { rid: 1n, pinfo: '\u0000' }), 200034);
        assert.equal(await s.code('dataset', { uid: 1n, key: 'k\u0000', val: 'v' }), 200034);
        assert.equal(await s.code('dataset', { uid: 1n, key: 'k', val: 'v\u0000' }), 200034);
        assert.equal(await s.code('dataget', { uid: 1n, key: '\u0000' }), 200034);
        assert.deepEqual(await s.backend.getUserInfo(1n), { oinfo: '', pinfo: '' });
        assert.equal(await s.backend.dataGet(1n, 'k'), undefined);
        await assert.rejects(client.setUserInfo('a\u0000'), (e: { code?: number }) => e.code === 200034);
        await assert.rejects(client.dataSet('k', '\u0000'), (e: { code?: number }) => e.code === 200034);
        // The store goes on: the next send is stored.
        await s.signed('sendmsg', { from: 1n, to: 2n, mid: 6n, mtype: 30, msg: 'after', attrs: '' });
        assert.equal((await client.getP2PMessage(1n, true, 1)).messages[0]!.message, 'after');
      } finally {
        await s.close();
      }
    });

    it('a str body whose bytes are not UTF-8 (the Go SDK sends binary bodies so) comes back as that str, byte for byte: pushes, history, getmsg, resends', async () => {
      const s = await open(kind);
      try {
        const client = await s.login(2n);
        const pushes: P2PMessage[] = [];
        client.on('message', (m) => pushes.push(m));
        await s.signed('setlisten', { p2p: true });
        // What the Go SDK's SendMessageByBinary wrote: a str (0xa8) of 8 bytes, most not UTF-8.
        const bytes = [0x00, 0xff, 0xfe, 0x80, 0x81, 0x01, 0xc3, 0x28];
        const asStr = [0xa8, ...bytes];
        const body = StrBytes.view(new Uint8Array(bytes));
        const sent = await s.signed('sendmsg', { from: 1n, to: 2n, mid: 1n, mtype: 80, msg: body, attrs: '' });

        const [heard] = await s.raw.waitForPushes('pushmsg');
        assert.ok(heard!['msg'] instanceof StrBytes, 'the listener gets a str');
        assert.deepEqual([...heard!['msg']], bytes);
        assert.ok(await until(() => pushes.length === 1));
        assert.deepEqual([...(pushes[0]!.message as Uint8Array)], bytes, 'the client gets the same bytes');

        const got = await s.signed('getmsg', { from: 1n, xid: 2n, mid: 1n, type: 1 });
        assert.ok(got['msg'] instanceof StrBytes);
        assert.deepEqual([...got['msg']], bytes);
        // History rows carry it too: our SDKs give the bytes as a binary body, not U+FFFD.
        const rows = (await s.signed('getp2pmsg', { uid: 1n, ouid: 2n, desc: true, num: 10 }))['msgs'] as unknown[][];
        assert.ok(rows[0]![5] instanceof StrBytes, 'a history row keeps the str');
        const page = await s.backend.getP2PMessage(1n, 2n, true, 10);
        assert.deepEqual([...(page.messages[0]!.message as Uint8Array)], bytes, 'the server SDK reads the same bytes');
        const mine = await client.getP2PMessage(1n, true, 10);
        assert.deepEqual([...(mine.messages[0]!.message as Uint8Array)], bytes, 'the client SDK reads the same bytes');
        const [conversation] = await client.getP2PConversationList(undefined, [80]);
        assert.deepEqual([...(conversation!.lastMessage!.message as Uint8Array)], bytes, 'and in the conversation list');
        for (const [method, payload] of [
          ['getp2pmsg', { uid: 1n, ouid: 2n, desc: true, num: 10 }],
          ['getmsg', { from: 1n, xid: 2n, mid: 1n, type: 1 }],
        ] as const) {
          const answer = await answerBytes(s.server, method, payload);
          assert.ok(Buffer.from(answer).includes(Buffer.from(asStr)), `${method}: the str as sent, in the answer's bytes`);
        }

        // A resend of it is a duplicate (same mtime); the same bytes as bin are other content.
        assert.deepEqual(await s.signed('sendmsg', { from: 1n, to: 2n, mid: 1n, mtype: 80, msg: body, attrs: '' }), sent);
        assert.equal(await s.code('sendmsg', { from: 1n, to: 2n, mid: 1n, mtype: 80, msg: new Uint8Array(bytes), attrs: '' }), 200053);
      } finally {
        await s.close();
      }
    });

    it('keys that differ only by case (or normalisation) are different keys; "" is a value, not an absent one', async () => {
      const s = await open(kind);
      try {
        await s.backend.dataSet(1n, 'Key', 'upper');
        await s.backend.dataSet(1n, 'key', 'lower');
        await s.backend.dataSet(1n, 'é', 'nfc');
        await s.backend.dataSet(1n, 'empty', '');
        assert.equal(await s.backend.dataGet(1n, 'Key'), 'upper');
        assert.equal(await s.backend.dataGet(1n, 'key'), 'lower');
        assert.equal(await s.backend.dataGet(1n, 'KEY'), undefined);
        assert.equal(await s.backend.dataGet(1n, 'e\u0301'), undefined);
        assert.equal(await s.backend.dataGet(1n, 'empty'), '');
        assert.equal(await s.code('dataset', { uid: 1n, key: '', val: 'v' }), 200034);

        await s.signed('setuserinfo', { uid: 3n, oinfo: '' });
        await s.signed('setuserinfo', { uid: 4n, oinfo: 'o', pinfo: 'p' });
        await s.signed('setuserinfo', { uid: 4n, pinfo: '' }); // oinfo kept
        assert.deepEqual(await s.signed('getuserinfo', { uid: 4n }), { oinfo: 'o', pinfo: '' });
        assert.deepEqual(await s.signed('getuseropeninfo', { uids: [3n, 4n, 5n] }), { info: { '3': '', '4': 'o', '5': '' } });
      } finally {
        await s.close();
      }
    });
  });
}

describe('text edges: limits in UTF-8 bytes, BOM, JSON escapes', () => {
  it('every size limit counts UTF-8 bytes: exactly at the limit passes, one byte over is refused', async () => {
    const s = await open();
    try {
      const euro = (bytes: number): string => '€'.repeat(Math.floor(bytes / 3)) + 'a'.repeat(bytes % 3); // '€' = 3 bytes
      const send = (msg: unknown, attrs: unknown): Promise<number | Payload> =>
        s.code('sendmsg', { from: 1n, to: 2n, mid: uniqueSalt(), mtype: 30, msg, attrs });
      const ok = (v: number | Payload): boolean => typeof v === 'object';
      assert.ok(ok(await send(euro(20480), '')));
      assert.equal(await send(euro(20481), ''), 200030);
      assert.ok(ok(await send('😀'.repeat(5120), ''))); // 10240 UTF-16 units, 20480 bytes
      assert.equal(await send('😀'.repeat(5120) + 'a', ''), 200030);
      assert.ok(ok(await send(new Uint8Array(20480).fill(0xff), '')));
      assert.equal(await send(new Uint8Array(20481), ''), 200030);
      assert.ok(ok(await send('x', euro(2048))));
      assert.equal(await send('x', euro(2049)), 200030);
      assert.ok(ok(await send('x', '😀'.repeat(512))));
      assert.equal(await send('x', '😀'.repeat(512) + 'a'), 200030);

      for (const key of ['oinfo', 'pinfo']) {
        assert.deepEqual(await s.code('setuserinfo', { uid: 1n, [key]: euro(65535) }), {});
        assert.equal(await s.code('setuserinfo', { uid: 1n, [key]: euro(65536) }), 200030);
        assert.equal(await s.code('setgroupinfo', { gid: 1n, [key]: '😀'.repeat(16384) }), 200030);
      }
      assert.deepEqual(await s.code('dataset', { uid: 1n, key: euro(128), val: euro(65535) }), {});
      assert.equal(await s.code('dataset', { uid: 1n, key: euro(129), val: 'v' }), 200035);
      assert.equal(await s.code('dataset', { uid: 1n, key: 'k', val: euro(65536) }), 200035);
      assert.equal(await s.backend.dataGet(1n, euro(128)), euro(65535));

      const client = await s.login(7n);
      assert.ok((await client.sendMessage(8n, 30, '😀'.repeat(5120))).mtime > 0n);
      await assert.rejects(client.sendMessage(8n, 30, '😀'.repeat(5120) + 'a'), (e: { code?: number }) => e.code === 200030);
      await client.setUserInfo(euro(65535));
      await assert.rejects(client.setUserInfo(euro(65536)), (e: { code?: number }) => e.code === 200030);

      // Listen event names: 64 bytes.
      assert.deepEqual(await s.code('addlisten', { events: ['é'.repeat(32), '😀'.repeat(16)] }), {});
      assert.equal(await s.code('addlisten', { events: ['é'.repeat(32) + 'a'] }), 200034);

      // Connection attrs (auth, addattrs): keys and values together, 2048 bytes.
      const token = await s.backend.getToken(9n);
      for (const [attrs, want] of [
        [{ é: euro(2046) }, true],
        [{ é: euro(2047) }, false],
      ] as const) {
        const c = await RawClient.tcp(s.server.clientEndpoint);
        try {
          const answer = await c.quest('auth', { pid: TEST_PID, uid: 9n, token, attrs }).catch((e: { code?: number }) => e.code);
          if (want) {
            assert.deepEqual(answer, { ok: true });
            assert.deepEqual(await c.quest('getattrs'), { attrs });
            await assert.rejects(c.quest('addattrs', { attrs: { k: '' } }), (e: { code?: number }) => e.code === 200030);
          } else assert.equal(answer, 200030);
        } finally {
          c.close();
        }
      }
    } finally {
      await s.close();
    }
  });

  it('a BOM at the start of a text body sent as bin stays when clients and listeners read it as a string', async () => {
    // Chat and cmd bodies sent as bin reach clients as strings, chat/cmd/file bodies reach
    // listening backends as strings (client-api.md §7, README "Bodies"): a leading U+FEFF was
    // dropped on the way (the default TextDecoder strips it), while the same text sent as str kept it.
    const s = await open();
    try {
      const listener = await RawClient.tcp(s.server.serverEndpoint);
      await listener.signed('setlisten', { p2p: true }, TEST_PID, TEST_SECRET);
      const client = await s.login(2n);
      const pushes: P2PMessage[] = [];
      client.on('message', (m) => pushes.push(m));
      const text = '\ufeffhi';
      await s.signed('sendmsg', { from: 1n, to: 2n, mid: 1n, mtype: 30, msg: utf8(text), attrs: '' });
      await s.signed('sendmsg', { from: 1n, to: 2n, mid: 2n, mtype: 32, msg: utf8(text), attrs: '' });
      await s.signed('sendmsg', { from: 1n, to: 2n, mid: 3n, mtype: 30, msg: text, attrs: '' });

      await until(() => pushes.length === 3);
      assert.deepEqual(
        pushes.map((p) => codePoints(p.message)),
        [
          ['feff', '68', '69'],
          ['feff', '68', '69'],
          ['feff', '68', '69'],
        ],
      );
      assert.deepEqual(codePoints(pushes[0]!.translatedInfo?.sourceText), ['feff', '68', '69']);
      const history = await client.getP2PMessage(1n, false, 10);
      assert.deepEqual(
        history.messages.map((m) => codePoints(m.message)),
        [
          ['feff', '68', '69'],
          ['feff', '68', '69'],
          ['feff', '68', '69'],
        ],
      );
      assert.deepEqual(codePoints((await client.getMessage(1n, 1n, 2n, 1)).message), ['feff', '68', '69']);
      const heard = await listener.waitForPushes('pushmsg', 3);
      assert.deepEqual(
        heard.map((p) => codePoints(p['msg'])),
        [
          ['feff', '68', '69'],
          ['feff', '68', '69'],
          ['feff', '68', '69'],
        ],
      );
      // A backend reads bodies as sent.
      const raw = await s.signed('getmsg', { from: 1n, xid: 2n, mid: 1n, type: 1 });
      assert.deepEqual([...(raw['msg'] as Uint8Array)], [...utf8(text)]);

      // A string key sent as bin (Python bytes) is read the same way.
      await s.signed('dataset', { uid: 1n, key: 'b', val: utf8(text) });
      assert.deepEqual(codePoints(await s.backend.dataGet(1n, 'b')), ['feff', '68', '69']);
      listener.close();
    } finally {
      await s.close();
    }
  });

  it('the HTTP bridge reads a body that starts with a UTF-8 BOM, as FPNN JSON frames do', async () => {
    // RFC 8259 §8.1 lets a parser ignore a BOM; FPNN JSON frames did, the HTTP bridge answered 10004.
    const s = await open();
    try {
      const bom = new Uint8Array([0xef, 0xbb, 0xbf]);
      const withBom = (text: string): Uint8Array => new Uint8Array([...bom, ...utf8(text)]);
      const frame = await jsonFrame(
        s.server,
        'sendmsg',
        withBom(`{${jsonSignature('sendmsg')},"from":1,"to":2,"mid":1,"mtype":30,"msg":"\\ufeffframe","attrs":""}`),
      );
      assert.ok(frame.ok, JSON.stringify(frame.answer));
      const http = await post(
        s.server,
        'sendmsg',
        withBom(`{${jsonSignature('sendmsg')},"from":1,"to":2,"mid":2,"mtype":30,"msg":"\\ufeffhttp","attrs":""}`),
      );
      assert.equal(http.status, 200, JSON.stringify(http.answer));
      // Only the document's BOM goes: one inside a string is text.
      assert.equal((await s.signed('getmsg', { from: 1n, xid: 2n, mid: 2n, type: 1 }))['msg'], '\ufeffhttp');
      assert.equal((await s.signed('getmsg', { from: 1n, xid: 2n, mid: 1n, type: 1 }))['msg'], '\ufeffframe');
    } finally {
      await s.close();
    }
  });

  it('JSON \\u escapes: valid ones (pairs, U+0000, any case) are read exactly; a malformed one is 10004, never another character', async () => {
    const s = await open();
    try {
      const send = (mid: number, msg: string): Promise<{ status: number; answer: Payload }> =>
        post(s.server, 'sendmsg', `{${jsonSignature('sendmsg')},"from":1,"to":2,"mid":${mid},"mtype":30,"msg":"${msg}","attrs":""}`);
      assert.equal((await send(1, '\\u00e9\\uD83D\\uDE00\\u0000\\\\u0041\\/')).status, 200);
      assert.equal((await s.signed('getmsg', { from: 1n, xid: 2n, mid: 1n, type: 1 }))['msg'], 'é😀\u0000\\u0041/');
      const http = await post(s.server, 'getmsg', `{${jsonSignature('getmsg')},"from":1,"xid":2,"mid":1,"type":1}`);
      assert.equal(http.answer['msg'], 'é😀\u0000\\u0041/');

      // "\u00zz" was read as U+0000 followed by "z" (json-bigint stops at the first non-hex digit).
      for (const [mid, bad] of [
        [2, '\\u00zz'],
        [3, 'a\\u12g4'],
        [4, '\\\\\\u004'],
      ] as const) {
        const answer = await send(mid, bad);
        assert.equal(answer.status, 500, `${bad}: ${JSON.stringify(answer.answer)}`);
        assert.equal(answer.answer['code'], 10004, bad);
        assert.equal(await s.code('getmsg', { from: 1n, xid: 2n, mid: BigInt(mid), type: 1 }), 200070);
      }
      // The same over an FPNN JSON frame.
      const frame = await jsonFrame(
        s.server,
        'sendmsg',
        utf8(`{${jsonSignature('sendmsg')},"from":1,"to":2,"mid":5,"mtype":30,"msg":"\\u00zz","attrs":""}`),
      );
      assert.deepEqual([frame.ok, frame.answer['code']], [false, 10004]);
    } finally {
      await s.close();
    }
  });

  it("the HTTP bridge honours a request's Connection: close (a pooled socket is not reused after it)", async () => {
    // The answer said `Connection: Keep-Alive` whatever the request asked. Node's server still
    // treats the connection as closing, so a client that kept the socket (its agent believed the
    // answer) had its next request refused as a parse error: "socket hang up".
    const s = await open();
    try {
      for (let i = 0; i < 3; i++) {
        const answer = await post(s.server, '*ping', '{"n":1}', { Connection: 'close' });
        assert.equal(answer.status, 200);
        assert.equal(answer.headers['connection'], 'close');
      }
      const kept = await post(s.server, '*ping', '{"n":1}');
      assert.equal(kept.status, 200);
      assert.match(String(kept.headers['connection']), /^keep-alive$/i);
      // A raw request with Connection: close is answered, then the server closes the connection.
      const at = s.server.serverEndpoint.lastIndexOf(':');
      const text = await new Promise<string>((resolve, reject) => {
        const socket = connect(Number(s.server.serverEndpoint.slice(at + 1)), s.server.serverEndpoint.slice(0, at), () =>
          socket.write('POST /service/*ping HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: 2\r\n\r\n{}'),
        );
        const chunks: Buffer[] = [];
        socket.on('data', (c: Buffer) => chunks.push(c));
        socket.on('close', () => resolve(Buffer.concat(chunks).toString('latin1')));
        socket.on('error', reject);
        setTimeout(() => socket.destroy(), 3000).unref();
      });
      assert.match(text, /^HTTP\/1\.1 200 /);
      assert.match(text, /\r\nConnection: close\r\n/i);
    } finally {
      await s.close();
    }
  });
});
