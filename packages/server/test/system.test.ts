import assert from 'node:assert/strict';
import { Writable } from 'node:stream';
import { after, before, describe, it } from 'node:test';
import { RtmError } from '@rtm/fpnn';
import { RawClient, startTestServer, TEST_PID, TEST_SECRET, until, type TestServer } from '@rtm/testkit';
import { createLogger } from '../src/observability/logger.js';

// client-api.md §4 "System", end to end.

let nextUid = 1n << 57n;
const newUid = (): bigint => ++nextUid;

async function rejectsWith(promise: Promise<unknown>, code: number): Promise<void> {
  await assert.rejects(promise, (err: unknown) => {
    assert.ok(err instanceof RtmError, `expected RtmError, got ${String(err)}`);
    assert.equal(err.code, code, err.message);
    return true;
  });
}

describe('system methods', () => {
  let server: TestServer;
  let backend: RawClient;
  const clients: RawClient[] = [];
  const logLines: Record<string, unknown>[] = [];

  async function login(uid: bigint, attrs?: Record<string, string>): Promise<RawClient> {
    const { token } = await backend.signed('gettoken', { uid }, TEST_PID, TEST_SECRET);
    const c = await RawClient.websocket(server.clientEndpoint);
    clients.push(c);
    assert.deepEqual(await c.quest('auth', { pid: TEST_PID, uid, token, ...(attrs ? { attrs } : {}) }), { ok: true });
    return c;
  }

  before(async () => {
    const sink = new Writable({
      write(chunk: Buffer, _enc, done) {
        for (const line of chunk.toString().split('\n')) if (line) logLines.push(JSON.parse(line) as Record<string, unknown>);
        done();
      },
    });
    server = await startTestServer({}, { logger: createLogger('info', sink) });
    backend = await RawClient.tcp(server.serverEndpoint);
  });
  after(async () => {
    for (const c of clients) c.close();
    backend.close();
    await server.close();
  });

  it('addattrs merges into this connection only; getattrs answers one string map', async () => {
    const uid = newUid();
    const c = await login(uid, { device: 'phone' });
    const other = await login(uid);
    assert.deepEqual(await c.quest('getattrs'), { attrs: { device: 'phone' } });
    assert.deepEqual(await c.quest('addattrs', { attrs: { lang: 'en', device: 'tablet' } }), {});
    assert.deepEqual(await c.quest('getattrs'), { attrs: { device: 'tablet', lang: 'en' } });
    assert.deepEqual(await other.quest('getattrs'), { attrs: {} });
    await rejectsWith(c.quest('addattrs', { attrs: ['x'] }), 10010);
    await rejectsWith(c.quest('addattrs', {}), 10009);
  });

  it('getattrs answers a list of maps, one per connection of the user, to Android and Unity / C# up to 2.3', async () => {
    const uid = newUid();
    const withVersion = async (version: string, attrs: Record<string, string>) => {
      const { token } = await backend.signed('gettoken', { uid }, TEST_PID, TEST_SECRET);
      const c = await RawClient.tcp(server.clientEndpoint);
      clients.push(c);
      assert.deepEqual(await c.quest('auth', { pid: TEST_PID, uid, token, version, attrs }), { ok: true });
      return c;
    };
    const unity23 = await withVersion('C#-2.3.0', { dev: 'pc' });
    const android = await withVersion('Android-2.7.3', { dev: 'phone' });
    const unity27 = await withVersion('Unity-2.7.26', { dev: 'tablet' });
    const ce = server.clientEndpoint;
    const { attrs } = (await unity23.quest('getattrs')) as { attrs: Record<string, string>[] };
    assert.ok(Array.isArray(attrs), 'a list');
    assert.deepEqual(
      attrs.map(({ login, ...rest }) => {
        assert.match(login!, /^\d{10}$/, 'login in seconds');
        assert.ok(Math.abs(Number(login) - Date.now() / 1000) < 60);
        return rest;
      }),
      [
        { dev: 'pc', ce, my: '1' },
        { dev: 'phone', ce, my: '0' },
        { dev: 'tablet', ce, my: '0' },
      ],
      'every connection of the user, oldest login first; "my" marks the calling one',
    );
    const fromAndroid = (await android.quest('getattrs')) as { attrs: Record<string, string>[] };
    assert.deepEqual(
      fromAndroid.attrs.map((a) => [a['dev'], a['my']]),
      [
        ['pc', '0'],
        ['phone', '1'],
        ['tablet', '0'],
      ],
    );
    assert.deepEqual(await unity27.quest('getattrs'), { attrs: { dev: 'tablet' } }, 'newer Unity reads one map');
    unity23.close();
    await unity23.closed;
    await until(async () => ((await android.quest('getattrs')) as { attrs: unknown[] }).attrs.length === 2, 3000);
  });

  it('connection attrs are bounded (2,048 bytes of keys and values): over it 200030, and nothing changes', async () => {
    const uid = newUid();
    const c = await login(uid, { device: 'phone' });
    const big = Object.fromEntries(Array.from({ length: 100 }, (_, i) => [`key${i}`, 'v'.repeat(20)]));
    await rejectsWith(c.quest('addattrs', { attrs: big }), 200030);
    assert.deepEqual(await c.quest('getattrs'), { attrs: { device: 'phone' } });
    for (let i = 0; i < 3; i++) await c.quest('addattrs', { attrs: { [`k${i}`]: 'x'.repeat(600) } });
    await rejectsWith(c.quest('addattrs', { attrs: { k3: 'x'.repeat(600) } }), 200030);
    assert.deepEqual(await c.quest('addattrs', { attrs: { k0: 'short' } }), {}, 'replacing a value counts once');

    const { token } = await backend.signed('gettoken', { uid }, TEST_PID, TEST_SECRET);
    const d = await RawClient.websocket(server.clientEndpoint);
    clients.push(d);
    await rejectsWith(d.quest('auth', { pid: TEST_PID, uid, token, attrs: big }), 200030);
  });

  it('getservertime answers ms as an int64', async () => {
    const c = await login(newUid());
    const before = BigInt(Date.now());
    const { mts } = (await c.quest('getservertime')) as { mts: unknown };
    assert.equal(typeof mts, 'bigint');
    assert.ok((mts as bigint) >= before && (mts as bigint) <= BigInt(Date.now()));
  });

  it('adddebuglog is logged at info with the uid and accepted', async () => {
    const uid = newUid();
    const c = await login(uid);
    assert.deepEqual(await c.quest('adddebuglog', { msg: 'client says hi', attrs: '{"k":1}' }), {});
    const line = logLines.find((l) => l['debugMsg'] === 'client says hi');
    assert.ok(line, 'logged');
    assert.equal(line['uid'], String(uid));
    assert.equal(line['level'], 30);
    assert.equal(line['debugAttrs'], '{"k":1}');
  });

  it('adddebuglog: a client cannot write a 1 MiB line into the info log (the first 1024 characters, marked cut)', async () => {
    const c = await login(newUid());
    const msg = 'x'.repeat(1 << 20);
    assert.deepEqual(await c.quest('adddebuglog', { msg, attrs: 'y'.repeat(5000) }), {});
    const line = logLines.findLast((l) => l['msg'] === 'client debug log');
    assert.ok(line, 'logged');
    assert.equal(line['debugMsg'], `${'x'.repeat(1024)}… [truncated: ${1 << 20} characters]`);
    assert.equal(line['debugAttrs'], `${'y'.repeat(1024)}… [truncated: 5000 characters]`);
  });

  it('out-of-scope methods are accepted no-ops with validated keys', async () => {
    const c = await login(newUid());
    assert.deepEqual(await c.quest('adddevice', { apptype: 'fcm', devicetoken: 'tok' }), {});
    assert.deepEqual(await c.quest('removedevice', { devicetoken: 'tok' }), {});
    assert.deepEqual(await c.quest('addoption', { type: 1, xid: 5n, mtypes: [30] }), {});
    assert.deepEqual(await c.quest('removeoption', { type: 2, xid: 6n }), {});
    assert.deepEqual(await c.quest('getoption'), { p2p: {}, group: {} });
    assert.deepEqual(await c.quest('setlang', { lang: 'fr' }), {});
    await rejectsWith(c.quest('setlang', {}), 10009);
    await rejectsWith(c.quest('adddevice', { apptype: 'fcm' }), 10009);
  });

  it('value-added methods answer 200060 NO_CONFIG_IN_CONSOLE with an explanation', async () => {
    const c = await login(newUid());
    for (const method of ['translate', 'profanity', 'tcheck', 'icheck', 'acheck', 'vcheck', 'speech2text', 'speechtranslation']) {
      await assert.rejects(c.quest(method, { text: 'x', dst: 'en' }), (err: unknown) => {
        assert.ok(err instanceof RtmError);
        assert.equal(err.code, 200060, method);
        assert.match(err.message, new RegExp(`'${method}'.*not provide`));
        return true;
      });
    }
  });
});
