/**
 * The send path's diagnostics channels (observability/channels.ts): a subscriber in the server's
 * process sees each send when it starts and each stored message before it is pushed; refused sends
 * and idempotent resends are received but never stored.
 */
import assert from 'node:assert/strict';
import { subscribe, unsubscribe } from 'node:diagnostics_channel';
import { after, before, describe, it } from 'node:test';
import { RTMClient } from '@rtm/client-sdk';
import { RTMServerClient } from '@rtm/server-sdk';
import { RawClient, startTestServer, TEST_PID, TEST_SECRET, until, type TestServer } from '@rtm/testkit';
import type { SendStoredEvent } from '../src/observability/channels.js';
import type { SendRequest } from '../src/services/messaging.js';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe('diagnostics channels of the send path', () => {
  let server: TestServer;
  let backend: RTMServerClient;
  let alice: RTMClient;
  let bob: RTMClient;
  const A = 1_000_000_000_000_000_001n;
  const B = 1_000_000_000_000_000_002n;
  /** Everything seen, in order: channel events and pushes reaching bob. */
  const seen: { what: 'received' | 'stored' | 'push'; mid: bigint; from?: bigint; to?: bigint; msg?: unknown; id?: bigint }[] = [];
  const onReceived = (r: unknown) => {
    const req = r as SendRequest;
    seen.push({ what: 'received', mid: req.mid, from: req.from, to: req.to, msg: req.msg });
  };
  const onStored = (e: unknown) => {
    const { request, message } = e as SendStoredEvent;
    assert.equal(request.mid, message.mid);
    seen.push({ what: 'stored', mid: message.mid, from: message.from, to: message.to, msg: message.msg, id: message.id });
  };
  const of = (mid: bigint) => seen.filter((s) => s.mid === mid).map((s) => s.what);

  before(async () => {
    subscribe('rtm:send:received', onReceived);
    subscribe('rtm:send:stored', onStored);
    server = await startTestServer();
    backend = new RTMServerClient({ pid: TEST_PID, secret: TEST_SECRET, endpoint: server.serverEndpoint, autoReconnect: false });
    await backend.connect();
    const login = async (uid: bigint) => {
      const client = new RTMClient({ endpoint: server.clientEndpoint, pid: TEST_PID, autoReconnect: false });
      assert.deepEqual(await client.login(uid, await backend.getToken(uid)), { ok: true });
      return client;
    };
    alice = await login(A);
    bob = await login(B);
    bob.on('message', (m) => seen.push({ what: 'push', mid: m.mid }));
  });
  after(async () => {
    unsubscribe('rtm:send:received', onReceived);
    unsubscribe('rtm:send:stored', onStored);
    alice.close();
    bob.close();
    await backend.close();
    await server.close();
  });

  it('a client send: received, then stored with its id, then pushed', async () => {
    const { mid } = await alice.sendMessage(B, 51, 'traced');
    await until(() => of(mid).includes('push'));
    assert.deepEqual(of(mid), ['received', 'stored', 'push']);
    const [received, stored] = seen.filter((s) => s.mid === mid);
    assert.deepEqual({ from: received!.from, to: received!.to, msg: received!.msg }, { from: A, to: B, msg: 'traced' });
    assert.deepEqual({ from: stored!.from, to: stored!.to, msg: stored!.msg }, { from: A, to: B, msg: 'traced' });
    assert.ok(typeof stored!.id === 'bigint' && stored!.id > 0n);
  });

  it('a refused send is received, never stored; a resend is stored once', async () => {
    const raw = await RawClient.tcp(server.serverEndpoint);
    try {
      await assert.rejects(
        raw.signed('sendmsg', { from: A, to: B, mid: 71n, mtype: 0, msg: 'bad mtype', attrs: '' }, TEST_PID, TEST_SECRET),
      );
      assert.deepEqual(of(71n), ['received']);
      const quest = { from: A, to: B, mid: 72n, mtype: 51, msg: 'twice', attrs: '' };
      await raw.signed('sendmsg', quest, TEST_PID, TEST_SECRET);
      await raw.signed('sendmsg', quest, TEST_PID, TEST_SECRET);
      await until(() => of(72n).includes('push'));
      await sleep(50); // strays
      assert.deepEqual(of(72n), ['received', 'stored', 'push', 'received']);
    } finally {
      raw.close();
    }
  });
});
