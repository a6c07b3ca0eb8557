import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { Payload } from '@rtm/fpnn';
import { RawClient, startTestServer, TEST_PID, TEST_SECRET, type TestServer } from '@rtm/testkit';

// Frames exactly as the official server SDKs build them (field names, msgpack widths: BigInt =
// int64, plain numbers = the smallest int, Uint8Array = bin), and what each SDK then reads from
// the answers and pushes. Sources: highras/rtm-server-sdk-* (reference only).

describe('official server SDK frames', () => {
  let server: TestServer;
  const raws: RawClient[] = [];
  let uidSeq = 81_000;
  let midSeq = 0n;
  const utf8 = new TextEncoder();

  const connect = async (): Promise<RawClient> => {
    const raw = await RawClient.tcp(server.serverEndpoint);
    raws.push(raw);
    return raw;
  };
  const signed = (raw: RawClient, method: string, payload: Payload): Promise<Payload> => raw.signed(method, payload, TEST_PID, TEST_SECRET);
  const nextMid = (): bigint => (BigInt(Date.now()) << 14n) + ++midSeq;

  before(async () => {
    server = await startTestServer();
  });
  after(async () => {
    for (const raw of raws) raw.close();
    await server.close();
  });

  it('Go / Java / C# / C++ history, getmsg and getmsgnum frames: every key the SDKs read, with their types', async () => {
    // Go GetGroupMessage / Java internalCoreGetGroupHistoryMsg / C# GetGroupMessage send begin, end
    // and lastid always (0 = unset, int64); C++ always sends `mtypes` (an empty set when none).
    // Go processHistoryAnswer: WantInt16("num"), WantInt64 lastid/begin/end, WantSlice("msgs");
    // Java buildHistoryMessages: (List) entries, (boolean) item 4; C++ msgpack tuple of 8.
    const raw = await connect();
    const [from, gid] = [BigInt(++uidSeq), BigInt(++uidSeq)];
    assert.deepEqual(await signed(raw, 'addgroupmembers', { gid, uids: [from] }), {});
    const mid = nextMid();
    await signed(raw, 'sendgroupmsg', { mtype: 51, from, gid, mid, msg: 'go text', attrs: '' });
    const empty = { gid, uid: from, desc: true, num: 10, begin: 0n, end: 0n, lastid: 0n, mtypes: [] };
    const page = await signed(raw, 'getgroupmsg', empty);
    assert.equal(page.num, 1);
    for (const k of ['lastid', 'begin', 'end']) assert.equal(typeof page[k], 'bigint', k);
    const entry = (page.msgs as unknown[][])[0]!;
    assert.equal(entry.length, 8);
    assert.deepEqual([entry[1], entry[2], entry[3], entry[4], entry[5], entry[6]], [from, 51, mid, false, 'go text', '']);
    // Go/Java mtypes: a list of int8 / Byte.
    const none = await signed(raw, 'getgroupmsg', { ...empty, mtypes: [30, 32] });
    assert.deepEqual([none.num, none.msgs], [0, []]);
    for (const k of ['lastid', 'begin', 'end']) assert.equal(typeof none[k], 'bigint', k);
    // Go GetMessage: WantInt64 id, WantInt8 mtype, WantString msg + attrs, WantInt64 mtime.
    const got = await signed(raw, 'getmsg', { mid, from, xid: gid, type: 2 });
    assert.deepEqual(Object.keys(got).sort(), ['attrs', 'id', 'msg', 'mtime', 'mtype']);
    // Go GetMsgCount sends begin/end only when > 0; Java mtypes is a Set<Long>.
    assert.deepEqual(await signed(raw, 'getmsgnum', { type: 2, xid: gid, mtypes: [51n] }), { sender: 1, num: 1 });
  });

  describe('C# listener (RTMMasterProcessor.BuildRTMMessage) of text bodies sent as bin', () => {
    // The C# server SDK reads `msg` of pushmsg / pushgroupmsg / pushroommsg with
    // quest.Want<string>("msg") for chat (30), cmd (32) and files (40..50): Want<T> is
    // Convert.ChangeType(obj, typeof(T)), which throws InvalidCastException on a byte[] (bin), so
    // the push is lost. A backend may well send such a body as bin: the Python server SDK packs
    // `bytes` as bin (send_chat(from, to, b'...', '')). server-api.md §6: `msg` in server pushes is a
    // string for these types. Binary custom types (and legacy audio 31) stay bin: C# and Java tell
    // a binary message by it.
    let listener: RawClient;
    let sender: RawClient;

    before(async () => {
      listener = await connect();
      sender = await connect();
      // C# SetListen(true, true, true, false): only the true flags are sent (and `room` only when allGroups).
      assert.deepEqual(await signed(listener, 'setlisten', { p2p: true, group: true, room: true }), {});
    });

    /** The `method` push that `send` causes (the listener's next one). */
    const pushOf = async (method: string, send: () => Promise<Payload>): Promise<Payload> => {
      const seen = listener.pushes.filter((p) => p.method === method).length;
      await send();
      return (await listener.waitForPushes(method, seen + 1))[seen]!;
    };

    it('pushmsg of a chat (30) and a cmd (32) sent as bin carries msg as a str', async () => {
      for (const mtype of [30, 32]) {
        const [from, to] = [++uidSeq, ++uidSeq];
        // Python send_message(mtype, from, to, b'...', ''): pid, sign, salt, ts, then call fields.
        const push = await pushOf('pushmsg', async () => {
          const answer = await signed(sender, 'sendmsg', {
            mtype,
            from,
            to,
            mid: nextMid(),
            msg: utf8.encode(`héllo ${mtype}`),
            attrs: '',
          });
          assert.equal(typeof answer.mtime, 'bigint');
          return answer;
        });
        assert.equal(push.mtype, mtype);
        assert.equal(push.msg, `héllo ${mtype}`, `mtype ${mtype}: msg must be a msgpack str, got ${push.msg?.constructor.name}`);
      }
    });

    it('pushgroupmsg of a file message (40) sent as bin carries msg as a str', async () => {
      const [from, gid] = [++uidSeq, BigInt(++uidSeq)];
      assert.deepEqual(await signed(sender, 'addgroupmembers', { gid, uids: [from] }), {});
      const body = JSON.stringify({ url: 'https://files.example/a.png', size: 3, surl: 'https://files.example/a.t.png' });
      const push = await pushOf('pushgroupmsg', () =>
        signed(sender, 'sendgroupmsg', { mtype: 40, from, gid, mid: nextMid(), msg: utf8.encode(body), attrs: '{"rtm":{},"custom":""}' }),
      );
      assert.equal(push.msg, body);
    });

    it('pushroommsg of a chat (30) sent as bin carries msg as a str', async () => {
      const [from, rid] = [++uidSeq, BigInt(++uidSeq)];
      assert.deepEqual(await signed(sender, 'addroommember', { rid, uid: from }), {});
      const push = await pushOf('pushroommsg', () =>
        signed(sender, 'sendroommsg', { mtype: 30, from, rid, mid: nextMid(), msg: utf8.encode('room text'), attrs: '' }),
      );
      assert.equal(push.msg, 'room text');
    });

    it('a binary custom message (mtype 51) stays bin in the push', async () => {
      // C# BuildMessageInfo / Java byte[] sends: other mtypes are binary messages when bin.
      const [from, to] = [++uidSeq, ++uidSeq];
      const bytes = Uint8Array.from([0xff, 0x00, 0xfe, 0x80]);
      const push = await pushOf('pushmsg', () => signed(sender, 'sendmsg', { mtype: 51, from, to, mid: nextMid(), msg: bytes, attrs: '' }));
      assert.ok(push.msg instanceof Uint8Array);
      assert.deepEqual([...push.msg], [...bytes]);
    });
  });
});
