import assert from 'node:assert/strict';
import { createPrivateKey, X509Certificate } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import { copyFile, mkdtemp, rm } from 'node:fs/promises';
import { connect as connectTcp } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { connect as connectTls, type PeerCertificate } from 'node:tls';
import { RTMClient, type WebSocketLike } from '@rtm/client-sdk';
import { RTMServerClient } from '@rtm/server-sdk';
import { RawClient, spawnServer, startTestServer, TEST_PID, TEST_SECRET, TLS_FIXTURES, until, type TestServer } from '@rtm/testkit';
import WebSocket from 'ws';
import { ClientTls } from '../src/client-tls.js';
import { ConfigError, resolveConfig } from '../src/config.js';
import { createLogger } from '../src/observability/logger.js';
import { Metrics } from '../src/observability/metrics.js';

// The client gate's TLS port (RTM_TLS_CERT / RTM_TLS_KEY, RTM_CLIENT_TLS_PORT; spec client-api.md
// §1: wss://host:13322/service/websocket), over real sockets with test certificates.

const { a: A_CERT, b: B_CERT } = TLS_FIXTURES;
const tlsOf = (fixture: typeof A_CERT) => ({ tlsCertFile: fixture.certFile, tlsKeyFile: fixture.keyFile });

/** The certificate a new TLS connection to `port` is served (trusting both test certificates). */
function servedCertificate(port: number): Promise<PeerCertificate> {
  return new Promise((resolve, reject) => {
    const socket = connectTls({ host: '127.0.0.1', port, servername: 'localhost', ca: [A_CERT.cert, B_CERT.cert] }, () => {
      resolve(socket.getPeerCertificate());
      socket.destroy();
    });
    socket.once('error', reject);
  });
}

const fingerprintOf = (cert: Buffer): string => new X509Certificate(cert).fingerprint256;
const notAfterOf = (cert: Buffer): number => Date.parse(new X509Certificate(cert).validTo);

function metricLine(text: string, prefix: string): string | undefined {
  return text.split('\n').find((line) => line.startsWith(prefix));
}

describe('client gate over TLS', () => {
  let server: TestServer;
  let backend: RTMServerClient;
  const clients: RTMClient[] = [];
  const token = (uid: bigint) => backend.getToken(uid);

  const wssClient = (options: { ca?: Buffer } = {}): RTMClient => {
    const client = new RTMClient({
      sslEndpoint: server.clientTlsEndpoint, // the official browser SDK's ssl_endpoint
      pid: TEST_PID,
      autoReconnect: false,
      webSocketFactory: (url) => new WebSocket(url, { ca: options.ca ?? A_CERT.cert }) as unknown as WebSocketLike,
    });
    clients.push(client);
    return client;
  };

  before(async () => {
    server = await startTestServer(tlsOf(A_CERT));
    backend = new RTMServerClient({ pid: TEST_PID, secret: TEST_SECRET, endpoint: server.serverEndpoint, autoReconnect: false });
    await backend.connect();
  });
  after(async () => {
    for (const client of clients) client.close();
    await backend.close();
    await server.close();
  });

  it('a wss:// client and a ws:// client message each other; the server API reaches the wss:// one', async () => {
    const A = 9_100_000_000_000_001n;
    const B = 9_100_000_000_000_002n;
    const a = wssClient();
    const b = new RTMClient({ endpoint: server.clientEndpoint, pid: TEST_PID, autoReconnect: false });
    clients.push(b);
    const atA: { from: bigint; message: string }[] = [];
    const atB: { from: bigint; message: string }[] = [];
    a.on('message', (m) => atA.push({ from: m.fromUid, message: m.message as string }));
    b.on('message', (m) => atB.push({ from: m.fromUid, message: m.message as string }));
    assert.deepEqual(await a.login(A, await token(A)), { ok: true });
    assert.deepEqual(await b.login(B, await token(B)), { ok: true });

    await a.sendMessage(B, 30, 'from wss');
    await b.sendMessage(A, 30, 'from ws');
    await backend.sendMessage(30, 1n, A, 'from the backend');
    await until(() => atA.length === 2 && atB.length === 1);
    assert.deepEqual(atB, [{ from: A, message: 'from wss' }]);
    assert.deepEqual(atA, [
      { from: B, message: 'from ws' },
      { from: 1n, message: 'from the backend' },
    ]);

    const metrics = await server.services.metrics.registry.metrics();
    assert.equal(
      metricLine(metrics, 'rtm_connections{gate="client",transport="websocket+tls"}'),
      'rtm_connections{gate="client",transport="websocket+tls"} 1',
    );
    assert.equal(
      metricLine(metrics, 'rtm_connections{gate="client",transport="websocket"}'),
      'rtm_connections{gate="client",transport="websocket"} 1',
    );
    assert.equal(
      metricLine(metrics, 'rtm_tls_certificate_expiry_timestamp_seconds '),
      `rtm_tls_certificate_expiry_timestamp_seconds ${Math.floor(notAfterOf(A_CERT.cert) / 1000)}`,
    );
  });

  it('FPNN over TLS (what the port also speaks): auth and a send, as on the plain port', async () => {
    const uid = 9_100_000_000_000_011n;
    const raw = await RawClient.tls(server.clientTlsEndpoint!, A_CERT.cert);
    try {
      assert.deepEqual(await raw.quest('auth', { pid: TEST_PID, uid, token: await token(uid) }), { ok: true });
      const sent = await raw.quest('sendmsg', { to: uid + 1n, mid: 1n, mtype: 30, msg: 'over tls', attrs: '' });
      assert.equal(typeof sent.mtime, 'bigint');
      const metrics = await server.services.metrics.registry.metrics();
      assert.equal(
        metricLine(metrics, 'rtm_connections{gate="client",transport="tcp+tls"}'),
        'rtm_connections{gate="client",transport="tcp+tls"} 1',
      );
    } finally {
      raw.close();
    }
  });

  it('a client that does not trust the certificate cannot log in; the server counts the failed handshake', async () => {
    const untrusting = wssClient({ ca: B_CERT.cert });
    // The SDK says why (in Node: ws's error; a browser's error event has no message).
    await assert.rejects(untrusting.login(9_100_000_000_000_021n, 'any'), {
      code: 20012,
      message: `cannot connect to wss://${server.clientTlsEndpoint}/service/websocket: self-signed certificate`,
    });
    // Node's client closes without an alert once it has refused the certificate (TLS 1.3: before its Finished).
    const failures = /rtm_tls_handshake_failures_total\{reason="closed during the handshake"\} 1/;
    assert.ok(await until(async () => failures.test(await server.services.metrics.registry.metrics())), 'counted');
  });

  it('plain HTTP on the TLS port is refused (reason "http request")', async () => {
    const socket = connectTcp(Number(server.clientTlsEndpoint!.split(':')[1]), '127.0.0.1');
    socket.on('error', () => undefined);
    socket.write('GET /service/websocket HTTP/1.1\r\nHost: x\r\n\r\n');
    await new Promise((resolve) => socket.once('close', resolve));
    assert.match(await server.services.metrics.registry.metrics(), /rtm_tls_handshake_failures_total\{reason="http request"\} 1/);
  });
});

describe('client gate TLS: time limits and stops', () => {
  it('a connection that never completes its handshake is closed after RTM_IDLE_TIMEOUT_MS', async () => {
    const server = await startTestServer({ ...tlsOf(A_CERT), idleTimeoutMs: 1000, pingIntervalMs: 500 });
    try {
      const socket = connectTcp(server.clientTlsPort!, '127.0.0.1');
      socket.on('error', () => undefined);
      const started = Date.now();
      await new Promise((resolve) => socket.once('close', resolve));
      const took = Date.now() - started;
      assert.ok(took >= 900 && took < 5000, `closed after ${took} ms`);
      const timeouts = /rtm_tls_handshake_failures_total\{reason="handshake timeout"\} 1/;
      assert.ok(await until(async () => timeouts.test(await server.services.metrics.registry.metrics())), 'counted');
    } finally {
      await server.close();
    }
  });

  it('a stop does not wait for a handshake under way', async () => {
    const server = await startTestServer(tlsOf(A_CERT));
    const socket = connectTcp(server.clientTlsPort!, '127.0.0.1');
    socket.on('error', () => undefined);
    await new Promise((resolve) => socket.once('connect', resolve));
    const closed = new Promise((resolve) => socket.once('close', resolve));
    const started = Date.now();
    await server.close();
    await closed;
    assert.ok(Date.now() - started < 2500, `stop took ${Date.now() - started} ms`);
  });
});

describe('client gate TLS: certificates', () => {
  let dir: string;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'rtm-tls-'));
  });
  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  const place = async (cert: typeof A_CERT, key: typeof A_CERT): Promise<{ tlsCertFile: string; tlsKeyFile: string }> => {
    const files = { tlsCertFile: join(dir, 'server.crt'), tlsKeyFile: join(dir, 'server.key') };
    await copyFile(cert.certFile, files.tlsCertFile);
    await copyFile(key.keyFile, files.tlsKeyFile);
    return files;
  };

  it('reloadTls serves a renewed certificate to new handshakes, keeps connections, and keeps the old one when the new pair is bad', async () => {
    const server = await startTestServer(await place(A_CERT, A_CERT));
    const backend = await RawClient.tcp(server.serverEndpoint);
    const uid = 9_100_000_000_000_031n;
    const { token } = await backend.signed('gettoken', { uid }, TEST_PID, TEST_SECRET);
    const before = await RawClient.tls(server.clientTlsEndpoint!, A_CERT.cert);
    try {
      assert.deepEqual(await before.quest('auth', { pid: TEST_PID, uid, token }), { ok: true });
      assert.equal((await servedCertificate(server.clientTlsPort!)).fingerprint256, fingerprintOf(A_CERT.cert));

      await place(B_CERT, B_CERT);
      const reloaded = server.reloadTls();
      assert.equal(reloaded.ok, true);
      assert.equal(reloaded.ok && reloaded.fingerprint256, fingerprintOf(B_CERT.cert));
      assert.equal((await servedCertificate(server.clientTlsPort!)).fingerprint256, fingerprintOf(B_CERT.cert));
      // The connection made before the reload goes on.
      assert.deepEqual(await before.quest('getonlineusers', { uids: [uid] }), { uids: [uid] });

      await place(A_CERT, B_CERT); // a renewal half done: A's certificate with B's key
      const refused = server.reloadTls();
      assert.equal(refused.ok, false);
      assert.match(!refused.ok ? refused.error : '', /RTM_TLS_KEY .*server\.key is not the private key of the certificate in RTM_TLS_CERT/);
      assert.equal((await servedCertificate(server.clientTlsPort!)).fingerprint256, fingerprintOf(B_CERT.cert));
    } finally {
      before.close();
      backend.close();
      await server.close();
    }
  });

  it('a renewal written in place is served after RTM_TLS_WATCH_MS, once both files settled; a bad pair is logged once', async () => {
    const lines: Record<string, unknown>[] = [];
    const logger = createLogger('info', { write: (s: string) => lines.push(JSON.parse(s)) } as unknown as NodeJS.WritableStream);
    const server = await startTestServer({ ...(await place(A_CERT, A_CERT)), tlsWatchMs: 100 }, { logger });
    const logged = (msg: string) => lines.filter((l) => l.msg === msg).length;
    try {
      await place(B_CERT, B_CERT); // certificate, then key: one renewal
      const served = async () => (await servedCertificate(server.clientTlsPort!)).fingerprint256;
      assert.ok(await until(async () => (await served()) === fingerprintOf(B_CERT.cert)), 'B served');
      assert.equal(logged('TLS certificate reloaded'), 1);
      assert.equal(logged('TLS reload failed: still serving the certificate loaded before'), 0);

      await place(A_CERT, B_CERT); // a pair that does not match
      assert.ok(await until(() => logged('TLS reload failed: still serving the certificate loaded before') === 1), 'failure logged');
      await new Promise((resolve) => setTimeout(resolve, 500)); // five more checks
      assert.equal(logged('TLS reload failed: still serving the certificate loaded before'), 1, 'not retried while the files stay');
      assert.equal(await served(), fingerprintOf(B_CERT.cert));
    } finally {
      await server.close();
    }
  });

  it('a start with files that cannot be served is refused, naming the file and the problem', async () => {
    assert.throws(() => resolveConfig({ RTM_TLS_CERT: A_CERT.certFile }), /RTM_TLS_CERT is set but RTM_TLS_KEY is not/);
    assert.throws(() => resolveConfig({ RTM_TLS_KEY: A_CERT.keyFile }), /RTM_TLS_KEY is set but RTM_TLS_CERT is not/);
    assert.throws(
      () =>
        resolveConfig({
          RTM_TLS_CERT: A_CERT.certFile,
          RTM_TLS_KEY: A_CERT.keyFile,
          RTM_CLIENT_PORT: '13400',
          RTM_CLIENT_TLS_PORT: '13400',
        }),
      /RTM_CLIENT_TLS_PORT and RTM_CLIENT_PORT are both 13400/,
    );
    const refusal = async (overrides: { tlsCertFile: string; tlsKeyFile: string }, message: RegExp) =>
      assert.rejects(startTestServer(overrides), (err: unknown) => err instanceof ConfigError && message.test(err.message));
    await refusal(
      { tlsCertFile: join(dir, 'missing.crt'), tlsKeyFile: A_CERT.keyFile },
      /RTM_TLS_CERT .*missing\.crt \(the certificate\) does not exist/,
    );
    await refusal(
      { tlsCertFile: A_CERT.certFile, tlsKeyFile: B_CERT.keyFile },
      /RTM_TLS_KEY .*b\.key is not the private key of the certificate/,
    );
    await refusal({ tlsCertFile: A_CERT.keyFile, tlsKeyFile: A_CERT.keyFile }, /RTM_TLS_CERT .*a\.key holds no PEM certificate/);
    await refusal(
      { tlsCertFile: join(dir, '..'), tlsKeyFile: A_CERT.keyFile },
      /RTM_TLS_CERT .* \(the certificate\) is a directory, not a file/,
    );
    const encrypted = join(dir, 'encrypted.key');
    writeFileSync(
      encrypted,
      createPrivateKey(readFileSync(A_CERT.keyFile)).export({ type: 'pkcs8', format: 'pem', cipher: 'aes-256-cbc', passphrase: 'secret' }),
    );
    await refusal(
      { tlsCertFile: A_CERT.certFile, tlsKeyFile: encrypted },
      /RTM_TLS_KEY .*encrypted\.key is encrypted \(protected by a passphrase/,
    );
  });

  it('a certificate near its end is warned about, an expired one logged as an error, with the days left', () => {
    const lines: Record<string, unknown>[] = [];
    const log = createLogger('info', { write: (s: string) => lines.push(JSON.parse(s)) } as unknown as NodeJS.WritableStream);
    const notAfter = notAfterOf(A_CERT.cert);
    const at = (now: number) => {
      lines.length = 0;
      const tls = new ClientTls({ cert: A_CERT.certFile, key: A_CERT.keyFile }, log, new Metrics(false), 0, () => now);
      tls.serving({ setCredentials: () => undefined } as never, 13322);
      tls.stop();
      return lines.filter((l) => (l.level as number) >= 40).map((l) => ({ msg: l.msg, daysLeft: l.daysLeft }));
    };
    assert.deepEqual(at(notAfter - 100 * 86_400_000), []);
    assert.deepEqual(at(notAfter - 3.5 * 86_400_000), [
      { msg: 'TLS certificate expires within 14 days: renew it and send SIGHUP', daysLeft: 3 },
    ]);
    assert.deepEqual(at(notAfter + 86_400_000), [
      { msg: 'TLS certificate expired: clients refuse it; renew it and send SIGHUP', daysLeft: -1 },
    ]);
  });

  it('rtm serve: logs the certificate it serves, and SIGHUP reloads it', async () => {
    const files = await place(A_CERT, A_CERT);
    const served = await spawnServer({ RTM_TLS_CERT: files.tlsCertFile, RTM_TLS_KEY: files.tlsKeyFile, RTM_DATA_DIR: join(dir, 'data') });
    try {
      assert.ok(served.clientTlsPort! > 0);
      const serving = served.logs.find((l) => typeof l.msg === 'string' && l.msg.startsWith('client gate TLS port'));
      assert.equal(serving?.fingerprint256, fingerprintOf(A_CERT.cert));
      // A client that refuses the certificate: logged with its address, which its reset took from
      // the TLS socket.
      const refusing = connectTls({ port: served.clientTlsPort!, host: '127.0.0.1', ca: B_CERT.cert });
      let refusedFrom = '';
      refusing.once('connect', () => (refusedFrom = `127.0.0.1:${refusing.localPort}`));
      await new Promise((resolve) => refusing.once('error', resolve));
      assert.ok(await until(() => served.logs.some((l) => l.msg === 'TLS handshake failed')), 'logged');
      const failed = served.logs.find((l) => l.msg === 'TLS handshake failed')!;
      assert.deepEqual([failed.gate, failed.remote, failed.reason], ['client', refusedFrom, 'closed during the handshake']);
      await place(B_CERT, B_CERT);
      served.child.kill('SIGHUP');
      assert.ok(await until(() => served.logs.some((l) => l.msg === 'TLS certificate reloaded')), 'reloaded');
      assert.equal(served.logs.find((l) => l.msg === 'TLS certificate reloaded')?.fingerprint256, fingerprintOf(B_CERT.cert));
      assert.equal((await servedCertificate(served.clientTlsPort!)).fingerprint256, fingerprintOf(B_CERT.cert));
    } finally {
      await served.kill();
    }
  });
});
