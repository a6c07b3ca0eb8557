/**
 * The esbuild browser bundle in a real headless Chromium: a page served from a local node:http
 * server imports dist-style `rtm-client.browser.js`, logs in to the fake FPNN server over the
 * browser's own WebSocket, sends a message, receives a push (chat map, ids > 2^53), and logs out.
 */
import assert from 'node:assert/strict';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { test } from 'node:test';
import { chromiumSkipReason, runInChromium } from '../../../test/browser/run-in-chromium.js';
import { buildBrowserBundle } from '../scripts/build-browser.mjs';
import { FakeRtmServer } from './helpers/fake-server.js';

const BIG = 81985529216486897n;
const BIG2 = 2n ** 62n + 5n;

const PAGE = `<!doctype html>
<html><head><meta charset="utf-8"><title>rtm client-sdk browser test</title></head>
<body>
<script type="module">
const params = new URLSearchParams(location.search);
window.testDone = (async () => {
  const { RTMClient } = await import('./rtm-client.browser.js');
  const client = new RTMClient({ endpoint: params.get('endpoint'), pid: 11000001, questTimeoutMs: 5000 });
  const events = [];
  client.on('closed', (e) => events.push('closed:' + e.reason));
  const login = await client.login(1001n, 'token-1001');
  const pushed = new Promise((resolve) => client.on('message', resolve));
  const sent = await client.sendMessage(1002n, 30, 'hello from chromium', '{"k":"v"}');
  const push = await pushed;
  const friends = await client.getFriends();
  await client.logout();
  console.log('browser test done');
  return {
    ok: login.ok,
    mid: String(sent.mid),
    mtime: String(sent.mtime),
    push: { fromUid: String(push.fromUid), toUid: String(push.toUid), mid: String(push.mid), message: push.message, translatedInfo: push.translatedInfo },
    friends: friends.map(String),
    events,
    nativeWebSocket: typeof WebSocket === 'function',
  };
})();
</script>
</body></html>`;

test(
  'the browser bundle logs in and exchanges messages in headless Chromium',
  { skip: chromiumSkipReason(), timeout: 60_000 },
  async (t) => {
    const bundle = await buildBrowserBundle({ write: false });
    const js = bundle.outputFiles?.[0]?.text;
    assert.ok(js && js.length > 1000, 'bundle built');
    assert.ok(!/from\s*["']ws["']/.test(js), 'ws is only imported dynamically');

    const rtm = await FakeRtmServer.start();
    const web: Server = createServer((req, res) => {
      const path = new URL(req.url ?? '/', 'http://x').pathname;
      if (path === '/') res.writeHead(200, { 'content-type': 'text/html; charset=utf-8' }).end(PAGE);
      else if (path === '/rtm-client.browser.js') res.writeHead(200, { 'content-type': 'text/javascript; charset=utf-8' }).end(js);
      else res.writeHead(404).end();
    });
    await new Promise<void>((resolve) => web.listen(0, '127.0.0.1', resolve));
    t.after(async () => {
      web.closeAllConnections();
      await new Promise<void>((resolve) => web.close(() => resolve()));
      await rtm.close();
    });

    const pushAnswers: unknown[] = [];
    rtm.handlers.sendmsg = (_payload, conn) => {
      // The peer "answers" with a chat push carrying a translation map and a mid above 2^53.
      setTimeout(() => {
        const chat = { source: 'zh', target: 'en', sourceText: '你好', targetText: 'hello' };
        conn.push('pushmsg', { from: 1002n, to: 1001n, mtype: 30, mid: BIG, msg: chat, attrs: '', mtime: 1n }).then(
          (a) => pushAnswers.push(a),
          (e: unknown) => pushAnswers.push(e),
        );
      }, 10);
      return { mtime: BIG2 };
    };
    rtm.handlers.getfriends = () => ({ uids: [BIG, 7] });

    const url = `http://127.0.0.1:${(web.address() as AddressInfo).port}/?endpoint=127.0.0.1:${rtm.port}`;
    const { result, pageErrors } = await runInChromium(url, 'window.testDone', { timeoutMs: 20_000 });
    assert.deepEqual(pageErrors, []);

    const sendmsg = rtm.received('sendmsg')[0]!;
    assert.deepEqual(result, {
      ok: true,
      mid: String(sendmsg.payload.mid),
      mtime: BIG2.toString(),
      push: {
        fromUid: '1002',
        toUid: '1001',
        mid: BIG.toString(),
        message: 'hello',
        translatedInfo: { source: 'zh', target: 'en', sourceText: '你好', targetText: 'hello' },
      },
      friends: [BIG.toString(), '7'],
      events: ['closed:logout'],
      nativeWebSocket: true,
    });
    assert.deepEqual(rtm.received('auth')[0]!.payload, { pid: 11000001, uid: 1001n, token: 'token-1001', version: 'TypeScript_0.1.0' });
    assert.deepEqual(sendmsg.payload, { to: 1002n, mid: sendmsg.payload.mid, mtype: 30, msg: 'hello from chromium', attrs: '{"k":"v"}' });
    assert.equal(typeof sendmsg.payload.mid, 'bigint');
    assert.equal(rtm.received('bye').length, 1);
    assert.deepEqual(pushAnswers, [{}], 'the browser answered the push');
  },
);
