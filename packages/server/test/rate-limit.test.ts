import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { RTMClient } from '@rtm/client-sdk';
import { RTMServerClient } from '@rtm/server-sdk';
import { startTestServer, TEST_PID, TEST_SECRET, type TestServer } from '@rtm/testkit';
import { RateLimiter } from '../src/gate/rate-limit.js';

describe('client-gate rate limit (per user, token bucket)', () => {
  let server: TestServer;
  let backend: RTMServerClient;
  before(async () => {
    server = await startTestServer({ clientCallsPerSecond: 5, clientCallBurst: 5 });
    backend = new RTMServerClient({ pid: TEST_PID, secret: TEST_SECRET, endpoint: server.serverEndpoint, autoReconnect: false });
    await backend.connect();
  });
  after(async () => {
    await backend.close();
    await server.close();
  });

  it('answers 200010 past the burst, stores nothing for refused sends, and refills', async () => {
    const client = new RTMClient({ endpoint: server.clientEndpoint, pid: TEST_PID, autoReconnect: false });
    assert.deepEqual(await client.login(31n, await backend.getToken(31n)), { ok: true });
    const results = await Promise.allSettled(Array.from({ length: 8 }, (_, i) => client.sendMessage(32n, 51, `m${i}`)));
    const refused = results.filter((r) => r.status === 'rejected');
    assert.equal(results.filter((r) => r.status === 'fulfilled').length, 5, 'the burst passes');
    for (const r of refused) assert.equal((r as PromiseRejectedResult).reason.code, 200010);
    assert.equal((await backend.getP2PMessage(31n, 32n, true, 20)).num, 5, 'refused sends are not stored');
    // The server gate is not limited by default; the client's bucket refills at 5/s.
    await new Promise((r) => setTimeout(r, 450));
    await client.sendMessage(32n, 51, 'after refill');
    await client.close();
  });

  it('token bucket: burst, refill rate, idle buckets swept, 0 = unlimited', () => {
    const limiter = new RateLimiter(10, 3);
    const t0 = 1_000_000;
    assert.deepEqual(
      [1, 2, 3, 4].map(() => limiter.take('u', t0)),
      [true, true, true, false],
    );
    assert.equal(limiter.take('u', t0 + 100), true, '100 ms at 10/s refills one token');
    assert.equal(limiter.take('u', t0 + 100), false);
    assert.equal(limiter.take('other', t0), true, 'buckets are per key');
    limiter.sweep(t0 + 10_000);
    assert.equal(new RateLimiter(0, 1).take('x'), true);
  });
});
