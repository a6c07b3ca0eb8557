/**
 * Run by robustness.test.ts in a child process: ends sessions in every way an app does (close()
 * while a relogin waits for its back-off, kickout, a refused relogin, logout(), close() while the
 * WebSocket is still opening), with an async listener that rejects on the way, then returns
 * without any clean-up of its own. The process must then exit by itself: a timer or socket the
 * SDK left behind keeps it alive, an unhandled rejection ends it with code 1.
 *
 *   node --conditions=rtm-source --import tsx exit-child.ts <client gate host:port> <server gate host:port>
 */
import { RTMServerClient } from '@rtm/server-sdk';
import { startFaultyProxy, TEST_PID, TEST_SECRET, until } from '@rtm/testkit';
import { RTMClient, type ClosedReason } from '../../src/index.js';

const [clientEndpoint, serverEndpoint] = process.argv.slice(2) as [string, string];
const [host, port] = clientEndpoint.split(':') as [string, string];
const backend = new RTMServerClient({ pid: TEST_PID, secret: TEST_SECRET, endpoint: serverEndpoint, autoReconnect: false });
await backend.connect();
const proxy = await startFaultyProxy(host, Number(port));
const ended: ClosedReason[] = [];

async function loggedIn(uid: bigint, options: { direct?: boolean } = {}): Promise<RTMClient> {
  const client = new RTMClient({
    endpoint: options.direct ? clientEndpoint : `127.0.0.1:${proxy.port}`,
    pid: TEST_PID,
    reconnectStrategy: { startConnectFailedCount: 1, maxIntervalSeconds: 30, linearRegressiveCount: 1, stableAfterMs: 0 },
  });
  client.on('closed', (e) => ended.push(e.reason));
  // The usual way to write a listener; its rejection must not end the process.
  client.on('closed', async () => {
    await Promise.resolve();
    throw new Error('an async listener failed');
  });
  const { ok } = await client.login(uid, await backend.getToken(uid));
  if (!ok) throw new Error(`login of ${uid} refused`);
  return client;
}

// 1. close() while the relogin waits for its back-off (15..30 s: far longer than the test waits).
const waiting = await loggedIn(6101n);
let failedAttempts = 0;
waiting.on('reloginCompleted', (e) => void (failedAttempts += e.successful ? 0 : 1));
proxy.refuse = true;
proxy.cut();
if (!(await until(() => failedAttempts >= 1))) throw new Error('no failed relogin attempt');
waiting.close();
proxy.refuse = false;

// 2. The server kicks the user out.
const kicked = await loggedIn(6102n, { direct: true });
await backend.kickout(6102n);
if (!(await until(() => kicked.state === 'closed'))) throw new Error('not kicked out');

// 3. A relogin refused: the token was removed while the connection was down.
const refused = await loggedIn(6103n);
await backend.removeToken(6103n);
proxy.cut();
if (!(await until(() => refused.state === 'closed'))) throw new Error('relogin not refused');

// 4. logout().
await (await loggedIn(6104n, { direct: true })).logout();

// 5. close() while the WebSocket is still opening.
const opening = new RTMClient({ endpoint: clientEndpoint, pid: TEST_PID });
const login = opening.login(6105n, 'token');
opening.close();
await login.catch(() => undefined);

proxy.close();
await backend.close();
console.log(JSON.stringify({ ended }));
