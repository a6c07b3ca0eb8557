import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { decodePayload, type Frame } from '@rtm/fpnn';
import { rtmLogin, type FpnnWsClient } from '../bench/workers/clients.js';
import { startBaseline, type ServerUnderTest } from '../bench/workers/lib.js';

// The latency bench's protocol floor must do for a P2P send what our server's protocol does: the
// answer to the sender, a twoway pushmsg with the message to the receiver only, and nothing back to
// the sender. A relay that skipped any of it would make a floor too low.

describe('bench: the FPNN relay (protocol floor)', () => {
  let relay: ServerUnderTest;
  let alice: FpnnWsClient;
  let bob: FpnnWsClient;
  const pushes: { to: string; frame: Frame & { kind: 'quest' } }[] = [];

  before(async () => {
    relay = await startBaseline('fpnn');
    const endpoint = `127.0.0.1:${relay.clientPort}`;
    alice = await rtmLogin(endpoint, 7001n, 'any token');
    bob = await rtmLogin(endpoint, 7002n, 'any token');
    alice.onPush = (frame) => pushes.push({ to: 'alice', frame });
    bob.onPush = (frame) => pushes.push({ to: 'bob', frame });
  });

  after(async () => {
    alice?.close();
    bob?.close();
    await relay?.stop();
  });

  it('answers sendmsg with an mtime and pushes the message to the receiver', async () => {
    const before = BigInt(Date.now());
    const answer = await alice.quest('sendmsg', { to: 7002n, mid: 42n, mtype: 51, msg: 'hello', attrs: 'a' });
    assert.equal(typeof answer.mtime, 'bigint');
    assert.ok((answer.mtime as bigint) >= before);
    const deadline = Date.now() + 2000;
    while (pushes.length === 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 5));
    await new Promise((r) => setTimeout(r, 50)); // a push to the sender would have come by now
    assert.equal(pushes.length, 1);
    const { to, frame } = pushes[0]!;
    assert.equal(to, 'bob');
    assert.equal(frame.method, 'pushmsg');
    assert.equal(frame.oneway, false);
    const push = decodePayload(frame.flag, frame.payload);
    assert.deepEqual(
      { ...push, from: BigInt(push.from as number), to: BigInt(push.to as number), mid: BigInt(push.mid as number) },
      { from: 7001n, to: 7002n, mid: 42n, mtype: 51, msg: 'hello', attrs: 'a', mtime: answer.mtime },
    );
  });
});
