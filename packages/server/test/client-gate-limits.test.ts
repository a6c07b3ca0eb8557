import assert from 'node:assert/strict';
import { connect as connectTcp, type Socket } from 'node:net';
import { describe, it } from 'node:test';
import { connect as connectTls } from 'node:tls';
import { RawClient, TLS_FIXTURES, until, type TestServer } from '@rtm/testkit';
import WebSocket from 'ws';
import { metric, serverWith, WARN } from './helpers/logged-server.js';

// The client gate's connection limits over real sockets (RTM_MAX_CLIENT_CONNECTIONS,
// RTM_MAX_CONNECTIONS_PER_ADDRESS): which connections are refused, that a place given back is
// taken again, that the PROXY header's client is the one counted, and that the counts, read on
// /metrics, come back to zero however connections end. Other client addresses are other loopback
// addresses (127.0.0.2, …: Linux routes the whole of 127/8 to lo). The counting alone, with a
// model: connection-limits.test.ts.

const sockets = (server: TestServer) => metric(server, 'rtm_client_sockets');
const busiest = (server: TestServer) => metric(server, 'rtm_client_sockets_busiest_address');
const refusals = (server: TestServer, why: string) => metric(server, `rtm_disconnects_total{gate="client",reason="refused: ${why}"}`);

/** FPNN over TCP to the client gate from `from` (a loopback address), optionally after `header` (as a balancer sends it). */
function fpnnFrom(server: TestServer, from: string, header?: string) {
  return RawClient.overSocket((ready) => {
    const socket = connectTcp({ port: server.clientPort, host: '127.0.0.1', localAddress: from }, ready);
    if (header) socket.write(header);
    return socket;
  });
}

/** Served: the gate answers (a loopback peer may call `*status`). */
async function assertServed(client: RawClient, what: string): Promise<void> {
  assert.deepEqual(await client.quest('*status'), { status: true }, what);
}

/** Refused: closed by the server without an answer. */
async function assertRefused(client: RawClient, what: string): Promise<void> {
  await assert.rejects(client.quest('*status'), Error, `${what}: answered`);
  await client.closed;
}

/** A socket to `port` from `from` that says nothing (it has not chosen a protocol yet); resolves once connected. */
async function silentFrom(port: number, from = '127.0.0.1'): Promise<Socket & { gone: Promise<void> }> {
  const socket = connectTcp({ port, host: '127.0.0.1', localAddress: from });
  socket.on('error', () => undefined);
  const gone = new Promise<void>((resolve) => socket.once('close', () => resolve()));
  await new Promise((resolve) => socket.once('connect', resolve));
  return Object.assign(socket, { gone });
}

describe('client gate connection limits', () => {
  it('per address: the one over RTM_MAX_CONNECTIONS_PER_ADDRESS is refused, other addresses are not, and a place given back is taken again', async () => {
    const server = await serverWith({ maxConnectionsPerAddress: 2 });
    const first = await fpnnFrom(server, '127.0.0.1');
    await assertServed(first, 'first from 127.0.0.1');
    const second = await RawClient.websocket(server.clientEndpoint); // from 127.0.0.1 too, over WebSocket
    await assertServed(second, 'second from 127.0.0.1');
    await assertRefused(await fpnnFrom(server, '127.0.0.1'), 'third from 127.0.0.1');
    await assertRefused(await fpnnFrom(server, '127.0.0.1'), 'fourth from 127.0.0.1');
    const other = await fpnnFrom(server, '127.0.0.2');
    await assertServed(other, 'first from 127.0.0.2');
    assert.deepEqual([await sockets(server), await busiest(server)], [3, 2], 'the refused ones hold nothing');

    first.close();
    assert.ok(await until(async () => (await sockets(server)) === 2), 'the closed one gave its place back');
    const again = await fpnnFrom(server, '127.0.0.1');
    await assertServed(again, 'from 127.0.0.1 once one of its two closed');
    await assertRefused(await fpnnFrom(server, '127.0.0.1'), 'and then one more');

    assert.equal(await refusals(server, 'max per address'), 3);
    assert.equal(await refusals(server, 'max connections'), 0);
    // One line a minute per address, at warn, naming the variable; the next says how many were left out.
    const logged = server.lines.filter((l) => l.msg === 'connection refused');
    assert.deepEqual(
      logged.map((l) => [l.level, l.gate, l.reason]),
      [[WARN, 'client', 'max per address']],
    );
    assert.match(String(logged[0]!.remote), /^127\.0\.0\.1:\d+$/);
    assert.match(String(logged[0]!.hint), /^RTM_MAX_CONNECTIONS_PER_ADDRESS \(2\) connections are open from this address/);
    for (const c of [second, other, again]) c.close();
  });

  it('in all: RTM_MAX_CLIENT_CONNECTIONS counts the plain and the TLS port together, whatever a connection speaks or has not said yet', async () => {
    const server = await serverWith({
      maxClientConnections: 3,
      tlsCertFile: TLS_FIXTURES.a.certFile,
      tlsKeyFile: TLS_FIXTURES.a.keyFile,
    });
    const silent = await silentFrom(server.clientPort); // has not said which protocol it speaks
    const overTls = await RawClient.tls(server.clientTlsEndpoint!, TLS_FIXTURES.a.cert);
    await assertServed(overTls, 'FPNN over TLS');
    const ws = await RawClient.websocket(server.clientEndpoint);
    await assertServed(ws, 'WebSocket');
    assert.equal(await sockets(server), 3);

    await assertRefused(await fpnnFrom(server, '127.0.0.2'), 'a fourth, from another address');
    const tlsRefused = await new Promise<string>((resolve) => {
      const socket = connectTls({ host: '127.0.0.1', port: server.clientTlsPort!, ca: TLS_FIXTURES.a.cert, servername: 'localhost' });
      socket.once('secureConnect', () => resolve('handshake done'));
      socket.once('error', (err: NodeJS.ErrnoException) => resolve(`failed: ${err.code ?? err.message}`));
      socket.once('close', () => resolve('closed'));
    });
    assert.match(tlsRefused, /^(failed|closed)/, 'a fourth on the TLS port: no handshake');

    silent.destroy();
    assert.ok(await until(async () => (await sockets(server)) === 2), 'the silent one gave its place back');
    const again = await fpnnFrom(server, '127.0.0.2');
    await assertServed(again, 'once a place is free');
    assert.equal(await refusals(server, 'max connections'), 2);
    const logged = server.lines.filter((l) => l.msg === 'connection refused');
    assert.deepEqual(
      logged.map((l) => [l.level, l.reason]),
      [[WARN, 'max connections']],
      'once a minute, whichever port',
    );
    assert.match(String(logged[0]!.hint), /^RTM_MAX_CLIENT_CONNECTIONS \(3\) connections are open on the client gate/);
    for (const c of [overTls, ws, again]) c.close();
  });

  it('behind a balancer: the client its PROXY header names is counted, not the balancer', async () => {
    const server = await serverWith({ clientProxyProtocolFrom: '127.0.0.1', maxConnectionsPerAddress: 1 });
    const v1 = (family: 'TCP4' | 'TCP6', client: string, port: number) =>
      `PROXY ${family} ${client} ${family === 'TCP4' ? '10.0.0.1' : '::1'} ${port} 13321\r\n`;
    // *status is served to internal addresses only: these clients are loopback-like private ones.
    const a = await fpnnFrom(server, '127.0.0.1', v1('TCP4', '10.7.0.1', 40001));
    await assertServed(a, '10.7.0.1 via the balancer');
    const b = await fpnnFrom(server, '127.0.0.1', v1('TCP4', '10.7.0.2', 40002));
    await assertServed(b, '10.7.0.2 via the same balancer');
    const sameAsA = await fpnnFrom(server, '127.0.0.1', v1('TCP6', '::ffff:10.7.0.1', 40003));
    await assertRefused(sameAsA, '10.7.0.1 again, in a TCP6 header as an IPv4-mapped address');
    assert.deepEqual([await sockets(server), await busiest(server)], [2, 1]);
    const logged = server.lines.find((l) => l.msg === 'connection refused');
    assert.equal(logged?.reason, 'max per address');
    assert.equal(logged?.remote, '::ffff:10.7.0.1:40003', 'the client the header names');
    for (const c of [a, b]) c.close();
  });

  it('a WebSocket client over a limit sees its handshake fail at once, and so does an HTTP call', async () => {
    const server = await serverWith({ maxConnectionsPerAddress: 1 });
    const held = await RawClient.websocket(server.clientEndpoint);
    const started = Date.now();
    const failure = await Promise.race([
      new Promise<string>((resolve) => {
        const ws = new WebSocket(`ws://${server.clientEndpoint}/service/websocket`);
        ws.once('open', () => resolve('open'));
        ws.once('error', (err) => resolve(`error: ${err.message}`));
      }),
      new Promise<string>((resolve) => setTimeout(() => resolve('still waiting after 3 s'), 3000).unref()),
    ]);
    assert.match(failure, /^error: /);
    assert.ok(Date.now() - started < 3000, `${Date.now() - started} ms`);
    await assert.rejects(fetch(`http://${server.clientEndpoint}/service/auth`, { signal: AbortSignal.timeout(3000) }), (err: Error) =>
      /fetch failed/.test(err.message),
    );
    assert.equal(await refusals(server, 'max per address'), 2);
    held.close();
  });

  it('the counts come back to zero however connections end (close, reset, timeouts, TLS and PROXY failures, refusals)', async () => {
    const server = await serverWith({
      maxClientConnections: 40,
      maxConnectionsPerAddress: 6,
      clientProxyProtocolFrom: '127.0.0.3',
      idleTimeoutMs: 3000, // the set-up takes well under it: everything below is open at the count
      pingIntervalMs: 1000,
      tlsCertFile: TLS_FIXTURES.a.certFile,
      tlsKeyFile: TLS_FIXTURES.a.keyFile,
    });
    const tlsPort = server.clientTlsPort!;
    const ends: Promise<unknown>[] = [];

    // Logged in over WebSocket, then gone: one by `bye`, one closed, one reset.
    const backend = await RawClient.tcp(server.serverEndpoint);
    const users = await Promise.all(
      [1n, 2n, 3n].map((uid) => RawClient.loggedIn(server.clientEndpoint, backend, 9_300_000_000_000_000n + uid)),
    );
    backend.close();
    // FPNN over TCP that sends bytes which are not FPNN (a protocol error closes it).
    const garbled = await fpnnFrom(server, '127.0.0.2');
    await assertServed(garbled, 'FPNN before the garbage');
    // A socket that never says which protocol it speaks (the sniff timeout closes it), and one
    // that is neither FPNN nor HTTP (refused).
    const silent = await silentFrom(server.clientPort, '127.0.0.2');
    ends.push(silent.gone);
    const neither = await silentFrom(server.clientPort, '127.0.0.2');
    neither.write('SSH-2.0-x\r\n');
    ends.push(neither.gone);
    // An HTTP call (refused by the client gate, 500) on a keep-alive connection, closed by the
    // server's request deadline.
    const http = await fetch(`http://${server.clientEndpoint}/service/auth`, { method: 'POST', body: '{}' });
    assert.equal(http.status, 500);
    await http.text();
    // A WebSocket that never logs in (closed after the idle timeout).
    const lurker = await RawClient.websocket(server.clientEndpoint);
    ends.push(lurker.closed);
    // The TLS port: a handshake that fails (plain HTTP), one that never comes (timeout), and FPNN
    // over TLS that the client closes.
    const plainOnTls = await silentFrom(tlsPort, '127.0.0.4');
    plainOnTls.write('GET / HTTP/1.1\r\n\r\n');
    ends.push(plainOnTls.gone);
    const silentTls = await silentFrom(tlsPort, '127.0.0.4');
    ends.push(silentTls.gone);
    const overTls = await RawClient.tls(`localhost:${tlsPort}`, TLS_FIXTURES.a.cert);
    await assertServed(overTls, 'FPNN over TLS');
    // From the balancer (127.0.0.3): a bad PROXY header, one that never ends, and a good one.
    const badHeader = await silentFrom(server.clientPort, '127.0.0.3');
    badHeader.write('HELLO\r\n');
    ends.push(badHeader.gone);
    const halfHeader = await silentFrom(server.clientPort, '127.0.0.3');
    halfHeader.write('PROXY TCP4 ');
    ends.push(halfHeader.gone);
    const proxied = await fpnnFrom(server, '127.0.0.3', 'PROXY TCP4 10.8.0.1 10.0.0.1 40001 13321\r\n');
    await assertServed(proxied, 'FPNN via the balancer');
    // Over the per-address limit: 127.0.0.5 holds 6, the seventh and eighth are refused.
    const full = await Promise.all(Array.from({ length: 6 }, () => silentFrom(server.clientPort, '127.0.0.5')));
    for (let i = 0; i < 2; i++) await assertRefused(await fpnnFrom(server, '127.0.0.5'), `127.0.0.5, ${7 + i}th`);

    // Open now: 3 users, garbled, silent, the HTTP one (unless fetch closed it), lurker, silentTls,
    // overTls, halfHeader, proxied and the 6 of 127.0.0.5.
    assert.ok((await sockets(server)) >= 16, `${await sockets(server)} open`);
    assert.equal(await busiest(server), 6);

    await users[0]!.bye();
    users[1]!.close();
    (users[2]!.ws as unknown as { _socket: Socket })._socket.resetAndDestroy();
    garbled.write(Buffer.from('not FPNN at all'));
    overTls.close();
    proxied.socket.resetAndDestroy();
    for (const s of full) s.destroy();
    await Promise.all([...ends, garbled.closed, ...users.map((u) => u.closed)]);

    assert.ok(
      await until(async () => (await sockets(server)) === 0 && (await busiest(server)) === 0, 10_000),
      `${await sockets(server)} left`,
    );
    assert.equal(await refusals(server, 'max per address'), 2);
  });
});
