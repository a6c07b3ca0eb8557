import { describe, it } from 'node:test';
import { once } from 'node:events';
import { connect, createServer, type AddressInfo } from 'node:net';
import assert from 'node:assert/strict';
import {
  decodePayload,
  encodeAnswerFrame,
  encodePayload,
  encodeQuest,
  Flag,
  FpnnErrorCode,
  FpnnPeer,
  FrameDecoder,
  RtmError,
  type Frame,
  type Payload,
  type PeerOptions,
  type QuestHandler,
} from '@rtm/fpnn';

/** Two peers wired back to back through real encoding and a FrameDecoder on each side (no sockets). */
function linked(a: Partial<PeerOptions> = {}, b: Partial<PeerOptions> = {}) {
  const wire = { aToB: [] as Frame[], bToA: [] as Frame[], deliver: true };
  const decA = new FrameDecoder();
  const decB = new FrameDecoder();
  // Deliver asynchronously, like a socket: a quest's answer must not arrive inside quest().
  const left: FpnnPeer = new FpnnPeer({
    ...a,
    write: (bytes) => {
      for (const f of decB.push(bytes)) {
        wire.aToB.push(f);
        if (wire.deliver) queueMicrotask(() => right.receive(f));
      }
    },
  });
  const right: FpnnPeer = new FpnnPeer({
    ...b,
    write: (bytes) => {
      for (const f of decA.push(bytes)) {
        wire.bToA.push(f);
        if (wire.deliver) queueMicrotask(() => left.receive(f));
      }
    },
  });
  return { left, right, wire };
}

const tick = (ms = 0): Promise<void> => new Promise((r) => setTimeout(r, ms));

describe('FpnnPeer (spec/fpnn.md §3)', () => {
  it('matches answers to quests by seq, even when answered out of order', async () => {
    const handler: QuestHandler = async (q) => {
      await tick(q.payload.delay as number);
      return { echo: q.payload.n, method: q.method };
    };
    const { left, wire } = linked({}, { onQuest: handler });
    const answers = await Promise.all([30, 0, 15, 5].map((delay, n) => left.quest('echo', { n, delay })));
    assert.deepEqual(
      answers,
      [0, 1, 2, 3].map((n) => ({ echo: n, method: 'echo' })),
    );
    assert.deepEqual(
      wire.aToB.map((f) => f.seq),
      [1, 2, 3, 4],
    );
    // Answers went out in completion order, not quest order.
    assert.deepEqual(
      wire.bToA.map((f) => f.seq),
      [2, 4, 3, 1],
    );
    assert.equal(left.pendingQuests, 0);
  });

  it('answers in the quest encoding (JSON quest → JSON answer) and keeps int64 as bigint', async () => {
    const { left, wire } = linked({}, { onQuest: (q) => ({ mid: (q.payload.mid as bigint) + 1n }) });
    const answer = await left.quest('m', { mid: 2n ** 60n }, { flag: Flag.JSON });
    assert.deepEqual({ ...answer }, { mid: 2n ** 60n + 1n }); // JSON maps have a null prototype
    assert.equal(wire.bToA[0]!.flag, Flag.JSON);
  });

  it('error answers carry code and ex (status byte 1); both keys always present', async () => {
    const { left, wire } = linked(
      {},
      {
        onQuest: (q) => {
          if (q.method === 'rtm') throw new RtmError(200020, 'forbidden method');
          throw new TypeError('boom');
        },
        onInternalError: () => {},
      },
    );
    await assert.rejects(
      left.quest('rtm', {}),
      (e: unknown) => e instanceof RtmError && e.code === 200020 && e.message === 'forbidden method',
    );
    await assert.rejects(left.quest('internal', {}), (e: unknown) => e instanceof RtmError && e.code === FpnnErrorCode.CORE_UNKNOWN_ERROR);
    for (const f of wire.bToA) {
      assert.equal(f.kind === 'answer' && f.ok, false);
      const p = decodePayload(f.flag, f.payload);
      assert.equal(typeof p.code, 'number');
      assert.equal(typeof p.ex, 'string');
    }
  });

  it('reports internal errors through onInternalError with the quest', async () => {
    const seen: Array<[unknown, string]> = [];
    const { left } = linked(
      {},
      { onQuest: (): Promise<Payload> => Promise.reject(new Error('db down')), onInternalError: (err, q) => seen.push([err, q.method]) },
    );
    await assert.rejects(left.quest('x', {}), { code: 20001 });
    assert.equal(seen.length, 1);
    assert.equal((seen[0]![0] as Error).message, 'db down');
    assert.equal(seen[0]![1], 'x');
  });

  it('unknown method is answered 20004 when there is no handler', async () => {
    const { left } = linked();
    await assert.rejects(
      left.quest('nosuch', {}),
      (e: unknown) => e instanceof RtmError && e.code === FpnnErrorCode.CORE_UNKNOWN_METHOD && /nosuch/.test(e.message),
    );
  });

  it('an undecodable quest payload is answered with an error, not a crash', async () => {
    const { right, wire } = linked({}, { onQuest: () => ({}) });
    const bad = new FrameDecoder().push(encodeQuest('m', Uint8Array.of(0x91, 0x01), Flag.MSGPACK, false, 77))[0]!;
    wire.deliver = false;
    right.receive(bad);
    await tick();
    const answer = wire.bToA.at(-1)!;
    assert.equal(answer.seq, 77);
    assert.equal(answer.kind === 'answer' && answer.ok, false);
    assert.equal(decodePayload(answer.flag, answer.payload).code, FpnnErrorCode.PROTO_INVALID_PACKAGE);
  });

  it('a payload that cannot be encoded rejects with 20005; quest() never throws and nothing is sent', async () => {
    const { left, wire } = linked({}, { onQuest: () => ({}) });
    let result: Promise<Payload> | undefined;
    assert.doesNotThrow(() => {
      result = left.quest('m', { id: 2n ** 70n }); // beyond int64/uint64: msgpack cannot write it
    });
    await assert.rejects(result!, (e: unknown) => e instanceof RtmError && e.code === FpnnErrorCode.CORE_ENCODING && /'m'/.test(e.message));
    assert.equal(wire.aToB.length, 0);
    assert.equal(left.pendingQuests, 0);
    assert.deepEqual(await left.quest('m', { ok: 1 }), {}, 'the peer still works');
  });

  it('oneway quests reach the handler and are never answered', async () => {
    const got: unknown[] = [];
    const { left, wire } = linked({}, { onQuest: (q) => void got.push([q.method, q.oneway, q.payload]) });
    left.oneway('kickout', { ce: 1 });
    left.oneway('nohandler?', {});
    await tick(5);
    assert.deepEqual(got, [
      ['kickout', true, { ce: 1 }],
      ['nohandler?', true, {}],
    ]);
    assert.equal(wire.bToA.length, 0);
    assert.equal(wire.aToB[0]!.seq, 0);
    // Also without any handler (which would answer twoway quests 20004).
    const bare = linked();
    bare.left.oneway('x', {});
    await tick(5);
    assert.equal(bare.wire.bToA.length, 0);
  });

  it('times out quests with 20003 and ignores the late answer', async () => {
    const { left, wire } = linked(
      { questTimeoutMs: 60 },
      {
        onQuest: async (): Promise<Payload> => {
          await tick(200);
          return {};
        },
      },
    );
    const started = Date.now();
    await assert.rejects(
      left.quest('slow', {}),
      (e: unknown) => e instanceof RtmError && e.code === FpnnErrorCode.CORE_TIMEOUT && /slow/.test(e.message),
    );
    const took = Date.now() - started;
    assert.ok(took >= 55 && took < 1000, `timed out after ${took} ms`);
    assert.equal(left.pendingQuests, 0);
    // Per-quest timeout overrides the default.
    await assert.rejects(left.quest('slow', {}, { timeoutMs: 20 }), { code: 20003 });
    await tick(250); // the late answers arrive and are dropped without error
    assert.equal(wire.bToA.length, 2);
  });

  it('a stall after the answer was sent (frozen tab, suspended machine) does not time out the quest', async () => {
    // Over real sockets: the answer is in the client's socket buffer when the process stalls past
    // the quest's deadline. On waking, Node runs the overdue sweep before it reads the socket.
    const server = createServer((socket) => {
      const decoder = new FrameDecoder();
      socket.on('error', () => {});
      socket.on('data', (bytes) => {
        for (const f of decoder.push(bytes)) {
          if (f.kind !== 'quest') continue;
          if (f.method === 'answered') socket.write(encodeAnswerFrame(f.seq, { ok: true }, f.flag));
          const end = Date.now() + 300; // the stall, after the answer was written (or not)
          while (Date.now() < end);
        }
      });
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const socket = connect((server.address() as AddressInfo).port, '127.0.0.1');
    await once(socket, 'connect');
    try {
      const decoder = new FrameDecoder();
      const peer = new FpnnPeer({ write: (bytes) => socket.write(bytes) });
      socket.on('data', (bytes) => {
        for (const f of decoder.push(bytes)) peer.receive(f);
      });
      assert.deepEqual(await peer.quest('answered', {}, { timeoutMs: 100 }), { ok: true });
      // Not answered: still timed out, by the sweep that waited for the reads.
      const started = Date.now();
      await assert.rejects(peer.quest('unanswered', {}, { timeoutMs: 100 }), { code: FpnnErrorCode.CORE_TIMEOUT });
      assert.ok(Date.now() - started < 1000, `timed out after ${Date.now() - started} ms`);
      assert.equal(peer.pendingQuests, 0);
      peer.close();
    } finally {
      socket.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    }
  });

  it('close rejects every pending quest with 20002, and later quests at once', async () => {
    const { left } = linked({}, { onQuest: () => new Promise<Payload>(() => {}) });
    const p1 = left.quest('a', {});
    const p2 = left.quest('b', {});
    assert.equal(left.pendingQuests, 2);
    left.close('socket reset');
    left.close('twice is fine');
    for (const p of [p1, p2])
      await assert.rejects(
        p,
        (e: unknown) => e instanceof RtmError && e.code === FpnnErrorCode.CORE_CONNECTION_CLOSED && e.message === 'socket reset',
      );
    await assert.rejects(left.quest('c', {}), { code: 20002 });
    assert.equal(left.closed, true);
    assert.equal(left.pendingQuests, 0);
  });

  it('a write that throws rejects the quest with 20007', async () => {
    const peer = new FpnnPeer({
      write: () => {
        throw new Error('EPIPE');
      },
    });
    await assert.rejects(peer.quest('x', {}), (e: unknown) => e instanceof RtmError && e.code === FpnnErrorCode.CORE_SEND_ERROR);
    assert.equal(peer.pendingQuests, 0);
  });

  it('an error answer without code/ex still rejects, with a fallback code', async () => {
    const frames: Uint8Array[] = [];
    const peer = new FpnnPeer({ write: (f) => frames.push(f) });
    const p = peer.quest('x', {});
    const seq = new FrameDecoder().push(frames[0]!)[0]!.seq;
    const { encodeAnswer } = await import('@rtm/fpnn');
    peer.receive(new FrameDecoder().push(encodeAnswer(seq, encodePayload(Flag.MSGPACK, { ex: 200002 }), Flag.MSGPACK, false))[0]!);
    await assert.rejects(p, (e: unknown) => e instanceof RtmError && e.code === 20001 && e.message === '200002');
  });

  it('allocates seqs from 1, wrapping past 2^32-1 to 1 (never 0)', () => {
    const peer = new FpnnPeer({ write: () => {} });
    assert.equal(peer.allocSeq(), 1);
    assert.equal(peer.allocSeq(), 2);
    (peer as unknown as { nextSeq: number }).nextSeq = 0xffffffff;
    assert.equal(peer.allocSeq(), 0xffffffff);
    assert.equal(peer.allocSeq(), 1);
  });
});
