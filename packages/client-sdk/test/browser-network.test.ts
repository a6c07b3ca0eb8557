/**
 * The browser bundle in headless Chromium against the REAL server, as a web app uses it through
 * bad networks: the browser goes offline and back (the ping watchdog must notice a socket that
 * went silent), the server restarts on the same port; ids above 2^53, text and binary bodies,
 * error answers, calls after close(). The page counts its live timers: after close() none is left.
 */
import assert from 'node:assert/strict';
import { readFile, rm } from 'node:fs/promises';
import { createServer, type Server } from 'node:http';
import { gzipSync } from 'node:zlib';
import type { AddressInfo } from 'node:net';
import { after, before, describe, it } from 'node:test';
import { RTMServerClient } from '@rtm/server-sdk';
import { startTestServer, TEST_PID, TEST_SECRET, until, type TestServer } from '@rtm/testkit';
import type { Page } from 'playwright-core';
import { chromiumSkipReason, withChromiumPage } from '../../../test/browser/run-in-chromium.js';
import { buildBrowserBundle } from '../scripts/build-browser.mjs';

// Timers are wrapped before the SDK loads, so `liveTimers()` lists every timeout and interval it
// has pending. `mk(name, endpoint, options)` makes a client and logs its events in `logs[name]`.
const PAGE = `<!doctype html><html><head><meta charset="utf-8"></head><body>
<script type="module">
const live = new Map();
const st = setTimeout, ct = clearTimeout, si = setInterval, ci = clearInterval;
window.setTimeout = (fn, ms, ...a) => { const id = st(() => { live.delete(id); fn(...a); }, ms); live.set(id, 'timeout ' + ms); return id; };
window.clearTimeout = (id) => { live.delete(id); ct(id); };
window.setInterval = (fn, ms, ...a) => { const id = si(fn, ms, ...a); live.set(id, 'interval ' + ms); return id; };
window.clearInterval = (id) => { live.delete(id); ci(id); };
window.liveTimers = () => [...live.values()];
const sdk = await import('./rtm-client.browser.js');
const show = (v) => v === undefined ? null : JSON.parse(JSON.stringify(v, (_k, x) =>
  typeof x === 'bigint' ? 'n' + x : x instanceof Uint8Array ? { bytes: [...x] } : x instanceof Error ? { name: x.name, code: x.code } : x));
window.sdk = sdk;
window.show = show;
window.clients = {};
window.logs = {};
window.mk = (name, endpoint, options = {}) => {
  const c = new sdk.RTMClient({ endpoint, pid: ${TEST_PID}, questTimeoutMs: 3000, connectTimeoutMs: 2000, ...options });
  const log = (window.logs[name] = []);
  for (const ev of ['connected', 'disconnected', 'reloginCompleted', 'closed', 'error', 'message', 'roomMessage', 'groupMessage'])
    c.on(ev, (e) => log.push([ev, show(e)]));
  window.clients[name] = c;
  return c;
};
// A rejection as {name, code, isRTMError}, or the resolved value.
window.outcome = (p) => p.then((v) => ({ value: show(v) }), (e) => ({ name: e.name, code: e.code, isRTMError: e instanceof sdk.RTMError }));
window.ready = true;
</script></body></html>`;

/** Fast settings: the server pings every 250 ms; a client without a ping for 1.5 s reconnects. */
const FAST = { pingIntervalMs: 250, idleTimeoutMs: 3000 };
const CLIENT_OPTIONS = {
  maxPingIntervalSeconds: 1.5,
  reconnectStrategy: { startConnectFailedCount: 1, maxIntervalSeconds: 1, linearRegressiveCount: 2 },
};

const A = 2n ** 60n + 11n; // ids above 2^53 throughout
const B = 2n ** 60n + 12n;
const ROOM = 2n ** 61n + 3n;

type Log = [string, Record<string, unknown>][];

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

it('the browser bundle: no Node built-ins, `ws` only as a dynamic import, the exports the README lists', async (t) => {
  const bundle = await buildBrowserBundle({ write: false, metafile: true, minify: true });
  const inputs = Object.keys(bundle.metafile!.inputs);
  assert.deepEqual(
    inputs.filter((f) => /^(node:|<?(buffer|crypto|events|stream|util|net|tls|http|https|zlib|fs|os|path)>?$)|node_modules\/ws\//.test(f)),
    [],
  );
  // The protocol package's JSON text (json-bigint, bignumber.js) is left out: the SDK speaks msgpack.
  assert.deepEqual(
    inputs.filter((f) => /json-bigint|bignumber\.js|fpnn\/src\/json-text\.ts$/.test(f)),
    [],
  );
  assert.ok(inputs.some((f) => f.endsWith('fpnn/src/json-text.browser.ts')));
  const [output] = Object.values(bundle.metafile!.outputs);
  assert.deepEqual(output!.imports, [{ path: 'ws', kind: 'dynamic-import', external: true }]);
  for (const name of ['RTMClient', 'RTMError', 'RtmError', 'FpnnErrorCode', 'RtmErrorCode', 'DEFAULT_RECONNECT_STRATEGY', 'endpointToUrl'])
    assert.ok(output!.exports.includes(name), `exports ${name}`);
  const bytes = bundle.outputFiles![0]!.contents;
  t.diagnostic(`minified ${bytes.length} bytes, gzipped ${gzipSync(bytes, { level: 9 }).length} bytes`);
});

it('package.json: every entry point has types (TypeScript finds none for `@rtm/client-sdk/browser` otherwise)', async () => {
  const pkg = JSON.parse(await readFile(new URL('../package.json', import.meta.url), 'utf8')) as {
    exports: Record<string, Record<string, string>>;
  };
  for (const [entry, conditions] of Object.entries(pkg.exports)) assert.ok(conditions.types, `exports["${entry}"] has types`);
});

describe('the client SDK in headless Chromium against the real server', { skip: chromiumSkipReason(), timeout: 120_000 }, () => {
  let js: string;
  let web: Server;
  let pageUrl: string;

  before(async () => {
    const bundle = await buildBrowserBundle({ write: false });
    js = bundle.outputFiles![0]!.text;
    web = createServer((req, res) => {
      const path = new URL(req.url ?? '/', 'http://x').pathname;
      if (path === '/') res.writeHead(200, { 'content-type': 'text/html; charset=utf-8' }).end(PAGE);
      else if (path === '/rtm-client.browser.js') res.writeHead(200, { 'content-type': 'text/javascript; charset=utf-8' }).end(js);
      else res.writeHead(404).end();
    });
    await new Promise<void>((resolve) => web.listen(0, '127.0.0.1', resolve));
    pageUrl = `http://127.0.0.1:${(web.address() as AddressInfo).port}/`;
  });
  after(async () => {
    web.closeAllConnections();
    await new Promise<void>((resolve) => web.close(() => resolve()));
  });

  async function backendFor(server: TestServer): Promise<RTMServerClient> {
    const backend = new RTMServerClient({ pid: TEST_PID, secret: TEST_SECRET, endpoint: server.serverEndpoint });
    await backend.connect();
    return backend;
  }

  async function inPage(body: (tab: Page) => Promise<void>): Promise<void> {
    await withChromiumPage(pageUrl, async (tab) => {
      await tab.waitForFunction('window.ready === true');
      await body(tab);
    });
  }

  const logOf = (tab: Page, name: string): Promise<Log> =>
    tab.evaluate((n) => (window as never as { logs: Record<string, Log> }).logs[n]!, name);
  const events = (log: Log, name: string): Record<string, unknown>[] => log.filter(([e]) => e === name).map(([, p]) => p);

  async function loginInPage(
    tab: Page,
    name: string,
    endpoint: string,
    uid: bigint,
    token: string,
    options: object = CLIENT_OPTIONS,
  ): Promise<void> {
    const ok = await tab.evaluate(
      async ([n, e, u, tk, o]) => {
        const w = window as never as { mk(n: string, e: string, o: object): { login(u: bigint, t: string): Promise<{ ok: boolean }> } };
        return (await w.mk(n, e, o).login(BigInt(u), tk)).ok;
      },
      [name, endpoint, String(uid), token, options] as const,
    );
    assert.equal(ok, true, `${name} logged in`);
  }

  /** Runs `expr` (with `c` bound to client `name`) through `outcome()`. */
  const call = (tab: Page, name: string, expr: string): Promise<{ value?: unknown; name?: string; code?: number; isRTMError?: boolean }> =>
    tab.evaluate(`(() => { const c = window.clients[${JSON.stringify(name)}]; return window.outcome((async () => ${expr})()); })()`);

  async function closedWithoutTimers(tab: Page, name: string): Promise<void> {
    await tab.evaluate(`window.clients[${JSON.stringify(name)}].close()`);
    assert.equal(await tab.evaluate(`window.clients[${JSON.stringify(name)}].state`), 'closed');
    // The protocol peer's quest sweep ends with the connection; nothing else may stay behind.
    assert.ok(
      await until(async () => (await tab.evaluate('window.liveTimers().length')) === 0, 2000),
      `timers left after close(): ${await tab.evaluate('JSON.stringify(window.liveTimers())')}`,
    );
    const after = await call(tab, name, 'c.getUserRooms()');
    assert.deepEqual(after, { name: 'RtmError', code: 20012, isRTMError: true }, 'a call after close()');
  }

  it('offline and back: the watchdog notices, calls reject with 20012, relogin backs off, then rooms and pushes work again', async () => {
    const server = await startTestServer(FAST);
    const backend = await backendFor(server);
    try {
      await inPage(async (tab) => {
        await loginInPage(tab, 'a', server.clientEndpoint, A, await backend.getToken(A));
        assert.deepEqual(await call(tab, 'a', `c.enterRoom(${ROOM}n)`), { value: null });
        await backend.addRoomMember(ROOM, 7n);
        await backend.sendRoomMessage(51, 7n, ROOM, 'before');
        assert.ok(await until(async () => events(await logOf(tab, 'a'), 'roomMessage').length === 1, 3000), 'room push before');

        // A main thread busy for longer than the watchdog's limit (a stand-in for a frozen or
        // throttled tab): the overdue check must not call the connection dead while pings wait.
        await tab.evaluate('{ const end = performance.now() + 2500; while (performance.now() < end); }');
        await sleep(600);
        assert.deepEqual(events(await logOf(tab, 'a'), 'disconnected'), [], 'no false disconnect after a stall');

        // Offline emulation leaves the WebSocket open but silent: only the watchdog can tell.
        await tab.context().setOffline(true);
        assert.ok(await until(async () => events(await logOf(tab, 'a'), 'disconnected').length === 1, 5000), 'disconnected');
        const during = await call(tab, 'a', 'c.sendRoomMessage(' + ROOM + 'n, 51, "while offline")');
        assert.equal(during.code, 20012);
        assert.equal(during.isRTMError, true);
        await sleep(2500);
        const failed = events(await logOf(tab, 'a'), 'reloginCompleted');
        // Back-off 0, 0.25–0.5 s, then 0.5–1 s: 3 to 6 attempts in 2.5 s, not a storm.
        assert.ok(failed.length >= 2 && failed.length <= 7, `relogin attempts while offline: ${failed.length}`);
        assert.ok(failed.every((e) => e.successful === false && e.retryAgain === true));
        assert.equal(await tab.evaluate('window.clients.a.state'), 'reconnecting');

        await tab.context().setOffline(false);
        assert.ok(await until(async () => events(await logOf(tab, 'a'), 'connected').length === 2, 4000), 'relogin');
        const log = await logOf(tab, 'a');
        assert.deepEqual(events(log, 'connected')[1], { uid: `n${A}`, relogin: true });
        assert.match(String(events(log, 'disconnected')[0]!.reason), /no ping/);
        // Back within the server's grace period: still in the room (README, Session).
        assert.deepEqual(await call(tab, 'a', 'c.getUserRooms()'), { value: [`n${ROOM}`] });
        await backend.sendRoomMessage(51, 7n, ROOM, 'after');
        assert.ok(await until(async () => events(await logOf(tab, 'a'), 'roomMessage').length === 2, 3000), 'room push after');
        assert.equal(events(await logOf(tab, 'a'), 'roomMessage')[1]!.message, 'after');
        await closedWithoutTimers(tab, 'a');
      });
    } finally {
      await backend.close().catch(() => {});
      await server.close();
    }
  });

  it('back online: the relogin goes at once, not after the rest of a long back-off', async () => {
    const server = await startTestServer(FAST);
    const backend = await backendFor(server);
    try {
      await inPage(async (tab) => {
        // After one immediate attempt, relogins wait 15 – 30 s: only the `online` event can explain a quick one.
        const options = {
          ...CLIENT_OPTIONS,
          reconnectStrategy: { startConnectFailedCount: 1, maxIntervalSeconds: 30, linearRegressiveCount: 1 },
        };
        await loginInPage(tab, 'a', server.clientEndpoint, A, await backend.getToken(A), options);
        await tab.context().setOffline(true);
        assert.ok(
          await until(async () => events(await logOf(tab, 'a'), 'reloginCompleted').length === 1, 6000),
          'the immediate attempt failed',
        );
        await sleep(300);
        assert.equal(await tab.evaluate('window.clients.a.state'), 'reconnecting');
        const started = Date.now();
        await tab.context().setOffline(false);
        assert.ok(await until(async () => events(await logOf(tab, 'a'), 'connected').length === 2, 5000), 'relogin when back online');
        assert.ok(Date.now() - started < 5000, `relogged in ${Date.now() - started} ms after the network came back`);
        assert.deepEqual(events(await logOf(tab, 'a'), 'reloginCompleted')[1], { successful: true, retryAgain: false, attempt: 2 });
        assert.deepEqual(await call(tab, 'a', `c.getUserRooms()`), { value: [] });
        await closedWithoutTimers(tab, 'a');
      });
    } finally {
      await backend.close().catch(() => {});
      await server.close();
    }
  });

  it('a server restart on the same port: relogin with back-off, pushes again, nothing left after close()', async () => {
    let server = await startTestServer(FAST, { keepData: true });
    const dataDir = server.dataDir;
    let backend = await backendFor(server);
    try {
      await inPage(async (tab) => {
        await loginInPage(tab, 'a', server.clientEndpoint, A, await backend.getToken(A));
        await loginInPage(tab, 'b', server.clientEndpoint, B, await backend.getToken(B));
        assert.deepEqual(await call(tab, 'a', `c.enterRoom(${ROOM}n)`), { value: null });
        await backend.close();
        await server.close(); // keeps the data directory
        assert.ok(await until(async () => events(await logOf(tab, 'a'), 'disconnected').length === 1, 3000), 'disconnected');
        assert.equal((await call(tab, 'a', 'c.getFriends()')).code, 20012);
        await sleep(1500);
        const whileDown = events(await logOf(tab, 'a'), 'reloginCompleted').length;
        assert.ok(whileDown >= 2 && whileDown <= 6, `relogin attempts while the server was down: ${whileDown}`);

        // close() while a relogin is pending: no attempt after it, no timer left (checked below).
        await tab.evaluate('window.clients.b.close()');
        const bAttempts = events(await logOf(tab, 'b'), 'reloginCompleted').length;
        server = await startTestServer({ ...FAST, clientPort: Number(server.clientEndpoint.split(':')[1]) }, { dataDir });
        assert.ok(await until(async () => events(await logOf(tab, 'a'), 'connected').length === 2, 4000), 'relogin after the restart');
        assert.deepEqual(await call(tab, 'a', 'c.getUserRooms()'), { value: [`n${ROOM}`] });
        // Connected only now: a connection silent for FAST's idleTimeoutMs (3 s, as long as a slow
        // relogin may take) would have been closed by the server as one that never spoke.
        backend = await backendFor(server);
        await backend.addRoomMember(ROOM, 7n);
        await backend.sendRoomMessage(51, 7n, ROOM, 'after restart');
        await backend.sendMessage(30, 7n, A, 'p2p after restart');
        assert.ok(
          await until(async () => {
            const log = await logOf(tab, 'a');
            return events(log, 'roomMessage').length === 1 && events(log, 'message').length === 1;
          }, 3000),
          'pushes after the restart',
        );
        await closedWithoutTimers(tab, 'a');
        const bLog = await logOf(tab, 'b');
        assert.equal(events(bLog, 'reloginCompleted').length, bAttempts, 'no relogin attempt after close()');
        assert.deepEqual(events(bLog, 'closed'), [{ reason: 'close', code: 0 }]);
        assert.equal(events(bLog, 'connected').length, 1);
      });
    } finally {
      await backend.close().catch(() => {});
      await server.close().catch(() => {}); // may be closed already (a failure while it was down)
      await rm(dataDir, { recursive: true, force: true });
    }
  });

  it('ids above 2^53, non-ASCII text and binary bodies, error answers, a refused token', async () => {
    const server = await startTestServer();
    const backend = await backendFor(server);
    try {
      await inPage(async (tab) => {
        await loginInPage(tab, 'a', server.clientEndpoint, A, await backend.getToken(A), {});
        await loginInPage(tab, 'b', server.clientEndpoint, B, await backend.getToken(B), {});
        const text = 'héllo 你好 👋🏽 \u0000 end';
        const bytes = [0, 1, 0x80, 0xff, 0xc3, 0x28, 0xf0, 0x9f]; // not UTF-8; custom mtypes (51, 52) keep bin as bin
        const MID = 2n ** 62n + 7n;
        const sentText = await call(tab, 'a', `c.sendMessage(${B}n, 30, ${JSON.stringify(text)}, '', ${MID}n)`);
        assert.equal((sentText.value as { mid: string }).mid, `n${MID}`);
        assert.match((sentText.value as { mtime: string }).mtime, /^n\d{13}$/);
        await call(tab, 'a', `c.sendMessage(${B}n, 51, new Uint8Array(${JSON.stringify(bytes)}))`);
        assert.deepEqual(await call(tab, 'a', `c.enterRoom(${ROOM}n)`), { value: null });
        assert.deepEqual(await call(tab, 'b', `c.enterRoom(${ROOM}n)`), { value: null });
        await call(tab, 'a', `c.sendRoomMessage(${ROOM}n, 52, new Uint8Array(${JSON.stringify(bytes)}))`);
        assert.ok(
          await until(async () => {
            const log = await logOf(tab, 'b');
            return events(log, 'message').length === 2 && events(log, 'roomMessage').length === 1;
          }, 3000),
        );
        const log = await logOf(tab, 'b');
        const [p2pText, p2pBinary] = events(log, 'message');
        assert.equal(p2pText!.message, text);
        assert.equal(p2pText!.mid, `n${MID}`);
        assert.equal(p2pText!.fromUid, `n${A}`);
        assert.equal(p2pText!.toUid, `n${B}`);
        assert.deepEqual(p2pBinary!.message, { bytes });
        const room = events(log, 'roomMessage')[0]!;
        assert.deepEqual([room.rid, room.fromUid, room.message], [`n${ROOM}`, `n${A}`, { bytes }]);
        const history = (await call(tab, 'b', `c.getP2PMessage(${A}n, false, 10)`)).value as { messages: Record<string, unknown>[] };
        assert.deepEqual(
          history.messages.map((m) => [m.fromUid, m.mid === `n${MID}` ? 'MID' : 'generated', m.message]),
          [
            [`n${A}`, 'MID', text],
            [`n${A}`, 'generated', { bytes }],
          ],
        );
        assert.deepEqual(await call(tab, 'b', 'c.getUserRooms()'), { value: [`n${ROOM}`] });

        // Errors: an error answer, a number id that lost precision, a refused token.
        assert.deepEqual(await call(tab, 'a', `c.sendGroupMessage(${2n ** 59n}n, 30, 'x')`), {
          name: 'RtmError',
          code: 200041,
          isRTMError: true,
        });
        assert.deepEqual(await call(tab, 'a', 'c.getUserOpenInfo([2 ** 53 + 2])'), { name: 'RtmError', code: 200034, isRTMError: true });
        const refused = await tab.evaluate(
          async ([e, u]) => {
            const w = window as never as {
              mk(n: string, e: string, o: object): { login(u: bigint, t: string): Promise<{ ok: boolean }>; state: string };
            };
            const c = w.mk('bad', e, {});
            const r = await c.login(BigInt(u), 'WRONG');
            return { ok: r.ok, state: c.state };
          },
          [server.clientEndpoint, String(A)] as const,
        );
        assert.deepEqual(refused, { ok: false, state: 'idle' });
        assert.deepEqual(await call(tab, 'bad', 'c.getFriends()'), { name: 'RtmError', code: 20012, isRTMError: true });
        const unknown = await call(tab, 'a', 'c.sendQuest("nosuchmethod", {})');
        assert.equal(unknown.isRTMError, true);
        assert.equal(typeof unknown.code, 'number');
        assert.equal(await tab.evaluate('window.clients.a.state'), 'online', 'an error answer leaves the session alone');
        await tab.evaluate('window.clients.b.logout()');
        assert.deepEqual(await call(tab, 'b', 'c.getFriends()'), { name: 'RtmError', code: 20012, isRTMError: true });
        await closedWithoutTimers(tab, 'a');
        assert.deepEqual(await tab.evaluate('window.liveTimers()'), []);
        assert.deepEqual(events(await logOf(tab, 'a'), 'error'), []);
      });
    } finally {
      await backend.close().catch(() => {});
      await server.close();
    }
  });
});
