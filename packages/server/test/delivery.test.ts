import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { RTMClient } from '@rtm/client-sdk';
import { RTMServerClient } from '@rtm/server-sdk';
import { startTestServer, TEST_PID, TEST_SECRET, type TestServer } from '@rtm/testkit';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** A logged-in device that records every push it gets, by kind. */
class Device {
  readonly got: { kind: string; from: bigint; mid: bigint; message: unknown; target?: bigint }[] = [];
  kicked = false;
  constructor(
    readonly name: string,
    readonly client: RTMClient,
  ) {
    client.on('message', (m) => this.got.push({ kind: 'p2p', from: m.fromUid, mid: m.mid, message: m.message, target: m.toUid }));
    client.on('groupMessage', (m) => this.got.push({ kind: 'group', from: m.fromUid, mid: m.mid, message: m.message, target: m.gid }));
    client.on('roomMessage', (m) => this.got.push({ kind: 'room', from: m.fromUid, mid: m.mid, message: m.message, target: m.rid }));
    client.on('broadcastMessage', (m) => this.got.push({ kind: 'broadcast', from: m.fromUid, mid: m.mid, message: m.message }));
    client.on('kickout', () => (this.kicked = true));
  }
  count(mid: bigint): number {
    return this.got.filter((g) => g.mid === mid).length;
  }
}

describe('client gate delivery: every device that should, exactly once, and none that should not', () => {
  let server: TestServer;
  let backend: RTMServerClient;
  const devices: Device[] = [];
  const A = 1_000_000_000_000_000_001n; // ids above 2^53
  const B = 1_000_000_000_000_000_002n;
  const C = 1_000_000_000_000_000_003n; // offline at first
  const D = 1_000_000_000_000_000_004n; // online, in nothing
  const X = 9n; // a backend-only user
  const G = 7_000_000_000_000_000_001n;
  const R = 8_000_000_000_000_000_001n;
  let a1: Device, a2: Device, b: Device, d: Device;
  const events: { event: string; uid: bigint }[] = [];
  const listened: bigint[] = [];

  const login = async (name: string, uid: bigint): Promise<Device> => {
    const client = new RTMClient({ endpoint: server.clientEndpoint, pid: TEST_PID, autoReconnect: false });
    const token = await backend.getToken(uid);
    assert.deepEqual(await client.login(uid, token), { ok: true });
    const device = new Device(name, client);
    devices.push(device);
    return device;
  };
  /** Waits until pushes settle: every expected count reached, then a little more for strays. */
  const settle = async (check: () => boolean) => {
    for (let i = 0; i < 100 && !check(); i++) await sleep(20);
    await sleep(100);
  };

  before(async () => {
    server = await startTestServer({ logoutGraceMs: 100 });
    backend = new RTMServerClient({ pid: TEST_PID, secret: TEST_SECRET, endpoint: server.serverEndpoint, autoReconnect: false });
    await backend.connect();
    await backend.setListen({ p2p: true, events: true });
    backend.on('message', (m) => listened.push(m.mid));
    backend.on('event', (e) => events.push({ event: e.event, uid: e.uid }));
    await backend.addGroupMembers(G, [A, B, C]);
    a1 = await login('A1', A);
    a2 = await login('A2', A);
    b = await login('B', B);
    d = await login('D', D);
  });
  after(async () => {
    for (const dev of devices) await Promise.resolve(dev.client.close()).catch(() => undefined);
    await backend.close();
    await server.close();
  });

  it('p2p from a client: the receiver once, not the sending session, not others', async () => {
    const { mid } = await a1.client.sendMessage(B, 30, 'hello B');
    await settle(() => b.count(mid) === 1 && listened.includes(mid));
    assert.equal(b.count(mid), 1);
    assert.equal(b.got.find((g) => g.mid === mid)!.message, 'hello B', 'chat map turned back into text');
    for (const other of [a1, a2, d]) assert.equal(other.count(mid), 0, other.name);
    assert.equal(listened.filter((m) => m === mid).length, 1, 'the listening backend gets it once');
  });

  it('p2p from the server API reaches both devices of the receiver', async () => {
    const { mid } = await backend.sendMessage(51, X, A, 'to both of A', '');
    await settle(() => a1.count(mid) === 1 && a2.count(mid) === 1);
    assert.equal(a1.count(mid), 1);
    assert.equal(a2.count(mid), 1);
    assert.equal(b.count(mid) + d.count(mid), 0);
  });

  it('multi-user, group and room messages', async () => {
    const multi = await backend.sendMessages(51, X, [A, B, C], 'to A, B and C', '');
    const group = await a1.client.sendGroupMessage(G, 30, 'hello group');
    await a1.client.enterRoom(R);
    await b.client.enterRoom(R);
    const room = await b.client.sendRoomMessage(R, 51, 'hello room');
    await settle(() => a1.count(room.mid) === 1 && a2.count(room.mid) === 1 && b.count(group.mid) === 1);
    const own = await a1.client.sendRoomMessage(R, 51, 'from A in the room');
    await settle(() => b.count(own.mid) === 1);
    assert.equal(b.count(own.mid), 1);
    assert.equal(a2.count(own.mid), 0, "a room message is not pushed to the sender's other device");
    for (const dev of [a1, a2, b]) assert.equal(dev.count(multi.mid), 1, `${dev.name} multi`);
    assert.equal(d.count(multi.mid), 0);
    assert.equal(a1.count(group.mid), 0, 'not back to the sending session');
    assert.equal(a2.count(group.mid), 0, "not to the sender's other device either (RTM_PUSH_TO_SENDER_DEVICES is off)");
    assert.equal(b.count(group.mid), 1);
    assert.equal(d.count(group.mid), 0);
    assert.equal(a1.count(room.mid), 1);
    assert.equal(a2.count(room.mid), 1);
    assert.equal(b.count(room.mid), 0, 'not back to the sending session');
    assert.equal(d.count(room.mid), 0);
    await assert.rejects(d.client.sendRoomMessage(R, 51, 'not in it'), { code: 200040 });
    await assert.rejects(d.client.sendGroupMessage(G, 51, 'not a member'), { code: 200041 });
    await assert.rejects(d.client.sendMessage(D, 51, 'myself'), { code: 200052 });
  });

  it('broadcast reaches every online session once', async () => {
    const { mid } = await backend.broadcastMessage(51, X, 'everyone', '');
    await settle(() => [a1, a2, b, d].every((dev) => dev.count(mid) === 1));
    for (const dev of [a1, a2, b, d]) assert.equal(dev.count(mid), 1, dev.name);
  });

  it('an offline user finds messages in history and unread after login; listeners see the login', async () => {
    const c = await login('C', C);
    await settle(() => events.some((e) => e.event === 'login' && e.uid === C));
    assert.ok(events.some((e) => e.event === 'login' && e.uid === C));
    const unread = await c.client.getUnreadMessage();
    assert.ok(unread.p2p.includes(X), 'p2p from X is unread');
    assert.ok(unread.group.includes(G), 'group G has unread messages');
    const page = await c.client.getP2PMessage(X, true, 10);
    assert.equal(page.messages[0]!.message, 'to A, B and C');
    const gpage = await c.client.getGroupMessage(G, true, 10);
    assert.equal(gpage.messages[0]!.message, 'hello group');
  });

  it('a client asks who is online', async () => {
    assert.deepEqual(await b.client.getOnlineUsers([A, C, D, 12345n]), [A, C, D]);
    await assert.rejects(b.client.getOnlineUsers(Array.from({ length: 201 }, (_, i) => BigInt(i + 1))), { code: 200032 });
  });

  it('kickout closes every session of the user, who does not reconnect', async () => {
    await backend.kickout(D);
    await settle(() => d.kicked);
    assert.ok(d.kicked);
    assert.equal((await backend.getOnlineUsers([A, B, D])).includes(D), false);
  });

  it('a wrong token is {ok:false}, not an error; methods before login are refused', async () => {
    const client = new RTMClient({ endpoint: server.clientEndpoint, pid: TEST_PID, autoReconnect: false });
    assert.deepEqual(await client.login(B, 'WRONG'), { ok: false });
    await client.close();
  });
});

describe("RTM_PUSH_TO_SENDER_DEVICES: the sender's other devices get its p2p, group and room messages", () => {
  let server: TestServer;
  let backend: RTMServerClient;
  const clients: RTMClient[] = [];
  const A = 1_000_000_000_000_000_011n;
  const B = 1_000_000_000_000_000_012n;
  const G = 7_000_000_000_000_000_011n;
  const R = 8_000_000_000_000_000_011n;

  before(async () => {
    server = await startTestServer({ pushToSenderDevices: true });
    backend = new RTMServerClient({ pid: TEST_PID, secret: TEST_SECRET, endpoint: server.serverEndpoint, autoReconnect: false });
    await backend.connect();
    await backend.addGroupMembers(G, [A, B]);
  });
  after(async () => {
    for (const c of clients) c.close();
    await backend.close();
    await server.close();
  });

  it('every device of the sender but the sending one, once; the receivers once', async () => {
    const login = async (name: string, uid: bigint): Promise<Device> => {
      const client = new RTMClient({ endpoint: server.clientEndpoint, pid: TEST_PID, autoReconnect: false });
      clients.push(client);
      assert.deepEqual(await client.login(uid, await backend.getToken(uid)), { ok: true });
      return new Device(name, client);
    };
    const [a1, a2, b] = [await login('A1', A), await login('A2', A), await login('B', B)];
    await a1.client.enterRoom(R);
    await a2.client.enterRoom(R);
    await b.client.enterRoom(R);
    const sent = [
      await a1.client.sendMessage(B, 30, 'p2p'),
      await a1.client.sendGroupMessage(G, 30, 'group'),
      await a1.client.sendRoomMessage(R, 30, 'room'),
    ];
    for (let i = 0; i < 100 && !sent.every(({ mid }) => a2.count(mid) === 1 && b.count(mid) === 1); i++) await sleep(20);
    await sleep(100);
    for (const { mid } of sent) {
      assert.equal(a1.count(mid), 0, 'never the sending session');
      assert.equal(a2.count(mid), 1, "the sender's other device");
      assert.equal(b.count(mid), 1, 'the receiver');
    }
    assert.deepEqual(
      a2.got.map((g) => [g.kind, g.message]),
      [
        ['p2p', 'p2p'],
        ['group', 'group'],
        ['room', 'room'],
      ],
    );
  });
});
