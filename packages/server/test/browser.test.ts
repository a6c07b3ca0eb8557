/**
 * Our client SDK's browser bundle in headless Chromium against the REAL server: two users log in
 * from one page over the browser's own WebSocket, exchange p2p and room messages, read history.
 * Twice: an http page on ws://, and an https page on wss:// (the client gate's TLS port), as a
 * site served over https must.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { createServer as createHttpServer, type RequestListener, type Server } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import type { AddressInfo } from 'node:net';
import { test } from 'node:test';
import { RTMServerClient } from '@rtm/server-sdk';
import { startTestServer, TEST_PID, TEST_SECRET, TLS_FIXTURES } from '@rtm/testkit';
import { chromiumSkipReason, runInChromium } from '../../../test/browser/run-in-chromium.js';
import { buildBrowserBundle } from '../../client-sdk/scripts/build-browser.mjs';

const PAGE = `<!doctype html>
<html><head><meta charset="utf-8"><title>rtm real-server browser test</title></head><body>
<script type="module">
const p = new URLSearchParams(location.search);
window.testDone = (async () => {
  const { RTMClient } = await import('./rtm-client.browser.js');
  const A = BigInt(p.get('a')), B = BigInt(p.get('b')), R = 3001n;
  const alice = new RTMClient({ endpoint: p.get('endpoint'), pid: ${TEST_PID} });
  const bob = new RTMClient({ endpoint: p.get('endpoint'), pid: ${TEST_PID} });
  const la = await alice.login(A, p.get('ta'));
  const lb = await bob.login(B, p.get('tb'));
  const gotP2P = new Promise((r) => bob.on('message', r));
  const sent = await alice.sendMessage(B, 30, 'hi bob, from chromium');
  const push = await gotP2P;
  await alice.enterRoom(R);
  await bob.enterRoom(R);
  const gotRoom = new Promise((r) => alice.on('roomMessage', r));
  await bob.sendRoomMessage(R, 51, 'room hello');
  const room = await gotRoom;
  const history = await bob.getP2PMessage(A, true, 10);
  const bad = await new RTMClient({ endpoint: p.get('endpoint'), pid: ${TEST_PID}, autoReconnect: false }).login(B, 'WRONG');
  await alice.logout();
  await bob.logout();
  return {
    logins: [la.ok, lb.ok, bad.ok],
    push: { from: String(push.fromUid), mid: String(push.mid), sentMid: String(sent.mid), message: push.message },
    room: { from: String(room.fromUid), rid: String(room.rid), message: room.message },
    history: history.messages.map((m) => [String(m.fromUid), m.message]),
  };
})();
</script></body></html>`;

for (const scheme of ['ws', 'wss'] as const) {
  test(
    `the client SDK in headless Chromium against the real server, ${scheme === 'ws' ? 'an http page on ws://' : 'an https page on wss://'}`,
    { skip: chromiumSkipReason(), timeout: 90_000 },
    async (t) => {
      const tls = TLS_FIXTURES.a;
      const bundle = await buildBrowserBundle({ write: false });
      const js = bundle.outputFiles?.[0]?.text;
      assert.ok(js);
      const server = await startTestServer(scheme === 'wss' ? { tlsCertFile: tls.certFile, tlsKeyFile: tls.keyFile } : {});
      const backend = new RTMServerClient({ pid: TEST_PID, secret: TEST_SECRET, endpoint: server.serverEndpoint, autoReconnect: false });
      await backend.connect();
      const serve: RequestListener = (req, res) => {
        const path = new URL(req.url ?? '/', 'http://x').pathname;
        if (path === '/') res.writeHead(200, { 'content-type': 'text/html; charset=utf-8' }).end(PAGE);
        else if (path === '/rtm-client.browser.js') res.writeHead(200, { 'content-type': 'text/javascript; charset=utf-8' }).end(js);
        else res.writeHead(404).end();
      };
      const web: Server =
        scheme === 'wss' ? createHttpsServer({ cert: tls.cert, key: readFileSync(tls.keyFile) }, serve) : createHttpServer(serve);
      await new Promise<void>((resolve) => web.listen(0, '127.0.0.1', resolve));
      t.after(async () => {
        web.closeAllConnections();
        await new Promise<void>((resolve) => web.close(() => resolve()));
        await backend.close();
        await server.close();
      });
      const A = 81985529216486897n;
      const B = 81985529216486898n;
      const q = new URLSearchParams({
        endpoint: scheme === 'wss' ? `wss://${server.clientTlsEndpoint}/service/websocket` : server.clientEndpoint,
        a: String(A),
        b: String(B),
        ta: await backend.getToken(A),
        tb: await backend.getToken(B),
      });
      const url = `${scheme === 'wss' ? 'https://localhost' : 'http://127.0.0.1'}:${(web.address() as AddressInfo).port}/?${q}`;
      const { result, pageErrors } = await runInChromium(url, 'window.testDone', {
        timeoutMs: 30_000,
        ...(scheme === 'wss' ? { trustCertificates: [tls.cert] } : {}),
      });
      assert.deepEqual(pageErrors, []);
      const r = result as { logins: boolean[]; push: Record<string, string>; room: Record<string, string>; history: string[][] };
      assert.deepEqual(r.logins, [true, true, false]);
      assert.equal(r.push.from, String(A));
      assert.equal(r.push.mid, r.push.sentMid);
      assert.equal(r.push.message, 'hi bob, from chromium');
      assert.deepEqual(r.room, { from: String(B), rid: '3001', message: 'room hello' });
      assert.deepEqual(r.history, [[String(A), 'hi bob, from chromium']]);
      if (scheme === 'wss') {
        // The page's sockets were the TLS port's: none came to the plain one.
        const metrics = await server.services.metrics.registry.metrics();
        assert.match(metrics, /rtm_connections\{gate="client",transport="websocket\+tls"\}/);
        assert.doesNotMatch(metrics, /rtm_connections\{gate="client",transport="websocket"\}/);
        assert.doesNotMatch(metrics, /rtm_tls_handshake_failures_total\{/);
      }
    },
  );
}
