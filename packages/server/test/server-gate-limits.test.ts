import assert from 'node:assert/strict';
import { Agent, request } from 'node:http';
import { connect as connectTcp, type Socket } from 'node:net';
import { describe, it } from 'node:test';
import { RawClient, until, type TestServer } from '@rtm/testkit';
import { metric, serverWith, WARN } from './helpers/logged-server.js';

// The server gate's connection limit over real sockets (RTM_MAX_SERVER_CONNECTIONS): a backend
// that leaks connections is stopped by the gate, counted and logged, before the process runs out
// of files (where both gates' connections would be closed unseen). FPNN and HTTP bridge
// connections count alike, from accept to close; the client gate's limit is another count. The
// client gate's limits: client-gate-limits.test.ts.

const sockets = (server: TestServer) => metric(server, 'rtm_server_sockets');
const refusals = (server: TestServer, gate: string) =>
  metric(server, `rtm_disconnects_total{gate="${gate}",reason="refused: max connections"}`);

/** Served: the gate answers (a loopback peer may call `*status`). */
async function assertServed(client: RawClient, what: string): Promise<void> {
  assert.deepEqual(await client.quest('*status'), { status: true }, what);
}

/** Refused: closed by the server without an answer. */
async function assertRefused(client: RawClient, what: string): Promise<void> {
  await assert.rejects(client.quest('*status'), Error, `${what}: answered`);
  await client.closed;
}

/**
 * `*status` over the HTTP bridge (`agent`: a keep-alive one holds its connection after the
 * answer; none, the connection closes after it): the status code, or the error of a connection
 * closed without an answer.
 */
function bridgeStatus(server: TestServer, agent: Agent | false): Promise<string> {
  return new Promise((resolve) => {
    const req = request(`http://${server.serverEndpoint}/service/*status`, { method: 'POST', agent }, (res) => {
      res.resume();
      res.once('end', () => resolve(`answered ${res.statusCode}`));
    });
    req.once('error', (err: NodeJS.ErrnoException) => resolve(`failed: ${err.code ?? err.message}`));
    req.setTimeout(3000, () => req.destroy(new Error('no answer within 3 s')));
    req.end('{}');
  });
}

/** A socket to `port` that says nothing (it has not chosen a protocol yet); resolves once connected. */
async function silent(port: number): Promise<Socket & { gone: Promise<void> }> {
  const socket = connectTcp({ port, host: '127.0.0.1' });
  socket.on('error', () => undefined);
  const gone = new Promise<void>((resolve) => socket.once('close', () => resolve()));
  await new Promise((resolve) => socket.once('connect', resolve));
  return Object.assign(socket, { gone });
}

describe('server gate connection limit', () => {
  it('RTM_MAX_SERVER_CONNECTIONS: FPNN and HTTP bridge connections over it are closed at accept, counted and logged; a place given back is taken again', async () => {
    const server = await serverWith({ maxServerConnections: 3 });
    const fpnn = await RawClient.tcp(server.serverEndpoint);
    await assertServed(fpnn, 'FPNN');
    const keepAlive = new Agent({ keepAlive: true, maxSockets: 1 });
    assert.equal(await bridgeStatus(server, keepAlive), 'answered 200', 'an HTTP bridge call, its connection kept alive');
    const quiet = await silent(server.serverPort); // has not said which protocol it speaks
    assert.ok(await until(async () => (await sockets(server)) === 3), `${await sockets(server)} open`);

    await assertRefused(await RawClient.tcp(server.serverEndpoint), 'a fourth over FPNN');
    assert.match(await bridgeStatus(server, false), /^failed: /, 'a fourth over the HTTP bridge');
    assert.equal(await refusals(server, 'server'), 2);
    assert.equal(await sockets(server), 3, 'the refused ones hold nothing');

    // The client gate is not the server gate's count: it serves, and has refused nothing.
    const user = await RawClient.websocket(server.clientEndpoint);
    await assertServed(user, 'the client gate');
    user.close();
    assert.equal(await refusals(server, 'client'), 0);

    keepAlive.destroy(); // the kept-alive HTTP connection closes
    assert.ok(await until(async () => (await sockets(server)) === 2), 'the closed one gave its place back');
    assert.equal(await bridgeStatus(server, false), 'answered 200', 'an HTTP bridge call once a place is free');
    assert.ok(await until(async () => (await sockets(server)) === 2), 'and its connection, closed after the answer, gave it back');
    const again = await RawClient.tcp(server.serverEndpoint);
    await assertServed(again, 'FPNN once a place is free');
    await assertRefused(await RawClient.tcp(server.serverEndpoint), 'and then one more');
    assert.equal(await refusals(server, 'server'), 3);

    // One line a minute, at warn, naming the variable; the next says how many were left out.
    const logged = server.lines.filter((l) => l.msg === 'connection refused');
    assert.deepEqual(
      logged.map((l) => [l.level, l.gate, l.reason]),
      [[WARN, 'server', 'max connections']],
    );
    assert.match(String(logged[0]!.remote), /^127\.0\.0\.1:\d+$/);
    assert.match(
      String(logged[0]!.hint),
      /^RTM_MAX_SERVER_CONNECTIONS \(3\) connections are open on the server gate: a backend may be leaking/,
    );
    const started = server.lines.find((l) => l.msg === 'RTM server started');
    assert.equal(started?.['maxServerConnections'], 3, 'the start line says the limit');

    fpnn.close();
    again.close();
    quiet.destroy();
    await Promise.all([fpnn.closed, again.closed, quiet.gone]);
    assert.ok(await until(async () => (await sockets(server)) === 0), `${await sockets(server)} left`);
  });

  it('0: no limit of its own', async () => {
    const server = await serverWith({ maxServerConnections: 0 });
    const held = await Promise.all(Array.from({ length: 20 }, () => silent(server.serverPort)));
    const fpnn = await RawClient.tcp(server.serverEndpoint);
    await assertServed(fpnn, 'the 21st');
    assert.equal(await sockets(server), 21);
    assert.equal(await refusals(server, 'server'), 0);
    fpnn.close();
    for (const s of held) s.destroy();
  });
});
