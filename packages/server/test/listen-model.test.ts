import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import fc from 'fast-check';
import { RTMClient } from '@rtm/client-sdk';
import { RTMServerClient } from '@rtm/server-sdk';
import { startTestServer, TEST_PID, TEST_SECRET, until, type TestServer } from '@rtm/testkit';
import { assertModel, modelCommands, endSession, loginClient, sleep } from './helpers/model-run.js';

// Model-based test of server-side listening (server-api.md §4 "Listening", §6 pushes), end to end
// through both SDKs. fast-check draws sequences of setlisten (the "all" form, the list form, both
// in one quest), addlisten and removelisten on a listening backend, p2p / group / room sends from
// another backend, from the listener itself and from clients, and client logins and logouts. A
// model of the listen state (spec proposals: booleans replace the four flags, lists replace the
// four lists; a p2p message matches a listed uid as sender or receiver) says what the listener
// gets: each matching message once, in send order, whoever sent it, and each matching login /
// logout event once, in order.

const USERS = 3;
const PLACES = 2; // groups and rooms

interface ListenState {
  p2p: boolean;
  group: boolean;
  room: boolean;
  ev: boolean;
  uids: Set<number>;
  gids: Set<number>;
  rids: Set<number>;
  events: Set<string>;
}

class Model {
  readonly listen: ListenState = {
    p2p: false,
    group: false,
    room: false,
    ev: false,
    uids: new Set(),
    gids: new Set(),
    rids: new Set(),
    events: new Set(),
  };
  /** What the listener must have got: message pushes, and events, each in order. */
  readonly messages: string[] = [];
  readonly events: string[] = [];
  readonly online = new Array<boolean>(USERS).fill(false);

  hears(event: 'login' | 'logout'): boolean {
    return this.listen.ev || this.listen.events.has(event);
  }
}

class World {
  readonly got = { messages: [] as string[], events: [] as string[] };
  readonly clients: (RTMClient | undefined)[] = new Array(USERS).fill(undefined);
  constructor(
    readonly server: TestServer,
    readonly listener: RTMServerClient,
    readonly sender: RTMServerClient,
    readonly uids: bigint[],
    readonly gids: bigint[],
    readonly rids: bigint[],
    /** A member of every group and room who never logs in: the sender of group and room messages. */
    readonly poster: bigint,
    /** The uid of every logout event published, in order (the sender listens to events for it). */
    readonly logouts: readonly bigint[],
  ) {
    const uidIndex = (uid: bigint) => uids.indexOf(uid);
    listener.on('message', (m) => this.got.messages.push(`p2p ${m.mid}`));
    listener.on('groupMessage', (m) => this.got.messages.push(`group ${m.mid}`));
    listener.on('roomMessage', (m) => this.got.messages.push(`room ${m.mid}`));
    listener.on('event', (e) => {
      if (uidIndex(e.uid) >= 0) this.got.events.push(`${e.event} ${uidIndex(e.uid)}`);
    });
  }
}

type Cmd = fc.AsyncCommand<Model, World>;
const pick = <T>(all: readonly T[], which: readonly number[]) => which.map((i) => all[i]!);

/** setlisten: the "all" form, the list form, or both. */
class SetListen implements Cmd {
  constructor(
    readonly flags: { p2p: boolean; group: boolean; room: boolean; ev: boolean } | undefined,
    readonly lists: { uids: number[]; gids: number[]; rids: number[]; events: string[] } | undefined,
  ) {}
  check(): boolean {
    return this.flags !== undefined || this.lists !== undefined;
  }
  async run(m: Model, w: World): Promise<void> {
    // Both: the "all" form, then the list form, as two quests (Python's restoration after a
    // reconnect): the second must leave the flags alone.
    if (this.flags) {
      const { p2p, group, room, ev } = this.flags;
      await w.listener.setListen({ p2p, group, room, events: ev });
    }
    if (this.lists) {
      const { uids, gids, rids, events } = this.lists;
      await w.listener.setListen({ uids: pick(w.uids, uids), gids: pick(w.gids, gids), rids: pick(w.rids, rids), events });
    }
    if (this.flags) Object.assign(m.listen, this.flags);
    if (this.lists) {
      m.listen.uids = new Set(this.lists.uids);
      m.listen.gids = new Set(this.lists.gids);
      m.listen.rids = new Set(this.lists.rids);
      m.listen.events = new Set(this.lists.events);
    }
  }
  toString(): string {
    return `setlisten(${JSON.stringify(this.flags)}, ${JSON.stringify(this.lists)})`;
  }
}

class ChangeListen implements Cmd {
  constructor(
    readonly add: boolean,
    readonly lists: { uids: number[]; gids: number[]; rids: number[]; events: string[] },
  ) {}
  check(): boolean {
    return Object.values(this.lists).some((l) => l.length > 0);
  }
  async run(m: Model, w: World): Promise<void> {
    const lists = {
      uids: pick(w.uids, this.lists.uids),
      gids: pick(w.gids, this.lists.gids),
      rids: pick(w.rids, this.lists.rids),
      events: this.lists.events,
    };
    await (this.add ? w.listener.addListen(lists) : w.listener.removeListen(lists));
    const apply = <T>(set: Set<T>, items: T[]) => items.forEach((i) => (this.add ? set.add(i) : set.delete(i)));
    apply(m.listen.uids, this.lists.uids);
    apply(m.listen.gids, this.lists.gids);
    apply(m.listen.rids, this.lists.rids);
    apply(m.listen.events, this.lists.events);
  }
  toString(): string {
    return `${this.add ? 'add' : 'remove'}listen(${JSON.stringify(this.lists)})`;
  }
}

class Send implements Cmd {
  constructor(
    readonly kind: 'p2p' | 'group' | 'room',
    readonly via: 'sender' | 'listener' | 'client',
    readonly from: number,
    readonly to: number,
  ) {}
  check(m: Readonly<Model>): boolean {
    if (this.kind === 'p2p' && this.from === this.to) return false;
    // A client sends p2p only (it would have to be in the group or room).
    return this.via !== 'client' || (this.kind === 'p2p' && m.online[this.from]!);
  }
  async run(m: Model, w: World): Promise<void> {
    const backend = this.via === 'listener' ? w.listener : w.sender;
    let mid: bigint;
    if (this.kind === 'p2p') {
      const to = w.uids[this.to]!;
      mid = (
        await (this.via === 'client'
          ? w.clients[this.from]!.sendMessage(to, 30, 'p')
          : backend.sendMessage(30, w.uids[this.from]!, to, 'p'))
      ).mid;
      if (m.listen.p2p || m.listen.uids.has(this.from) || m.listen.uids.has(this.to)) m.messages.push(`p2p ${mid}`);
    } else if (this.kind === 'group') {
      mid = (await backend.sendGroupMessage(30, w.poster, w.gids[this.to % PLACES]!, 'g')).mid;
      if (m.listen.group || m.listen.gids.has(this.to % PLACES)) m.messages.push(`group ${mid}`);
    } else {
      mid = (await backend.sendRoomMessage(30, w.poster, w.rids[this.to % PLACES]!, 'r')).mid;
      if (m.listen.room || m.listen.rids.has(this.to % PLACES)) m.messages.push(`room ${mid}`);
    }
  }
  toString(): string {
    return `send(${this.kind}, via ${this.via}, ${this.from}→${this.to})`;
  }
}

/** A client logs in (a login event) or says `bye` (a logout event: no grace period here). */
class Presence implements Cmd {
  constructor(readonly u: number) {}
  check(): boolean {
    return true;
  }
  async run(m: Model, w: World): Promise<void> {
    const uid = w.uids[this.u]!;
    if (m.online[this.u]) {
      // The logout event follows the close, once the logout is written; wait for it to be published
      // before going on (the writes may take a while on a loaded machine): a login meanwhile would
      // continue the presence, and a listen changed meanwhile would change who hears it.
      const published = () => w.logouts.filter((x) => x === uid).length;
      const before = published();
      await endSession(w.clients[this.u]!, 'bye', 0, w.sender, uid, w.server);
      assert.ok(await until(() => published() > before), `the logout of ${this.u} is published`);
      w.clients[this.u] = undefined;
      m.online[this.u] = false;
      if (m.hears('logout')) m.events.push(`logout ${this.u}`);
    } else {
      w.clients[this.u] = await loginClient(w.server.clientEndpoint, w.sender, uid);
      m.online[this.u] = true;
      if (m.hears('login')) m.events.push(`login ${this.u}`);
    }
  }
  toString(): string {
    return `presence(${this.u})`;
  }
}

class Check implements Cmd {
  check(): boolean {
    return true;
  }
  async run(m: Model, w: World): Promise<void> {
    for (let i = 0; i < 100 && (w.got.messages.length < m.messages.length || w.got.events.length < m.events.length); i++) await sleep(10);
    await sleep(30); // strays
    assert.deepEqual(w.got.messages, m.messages, 'message pushes to the listener');
    assert.deepEqual(w.got.events, m.events, 'event pushes to the listener');
  }
  toString(): string {
    return 'check';
  }
}

const user = fc.integer({ min: 0, max: USERS - 1 });
const ids = (n: number) => fc.uniqueArray(fc.integer({ min: 0, max: n - 1 }), { maxLength: n });
const lists = fc.record({ uids: ids(USERS), gids: ids(PLACES), rids: ids(PLACES), events: fc.subarray(['login', 'logout']) });
const flags = fc.record({ p2p: fc.boolean(), group: fc.boolean(), room: fc.boolean(), ev: fc.boolean() });
const changeListen = fc.tuple(fc.boolean(), lists).map(([add, l]) => new ChangeListen(add, l));
const send = fc
  .tuple(
    fc.constantFrom('p2p' as const, 'group' as const, 'room' as const),
    fc.constantFrom('sender' as const, 'listener' as const, 'client' as const),
    user,
    user,
  )
  .map(([kind, via, from, to]) => new Send(kind, via, from, to));
// Listed twice: drawn twice as often.
const commands = [
  fc.tuple(fc.option(flags, { nil: undefined }), fc.option(lists, { nil: undefined })).map(([f, l]) => new SetListen(f, l)),
  changeListen,
  changeListen,
  send,
  send,
  user.map((u) => new Presence(u)),
  fc.constant(new Check()),
];

describe('server-side listening against a model', () => {
  let server: TestServer;
  let sender: RTMServerClient;
  let nextId = 1n << 58n; // ids above 2^53
  const logouts: bigint[] = [];

  before(async () => {
    server = await startTestServer({ logoutGraceMs: 0 });
    sender = new RTMServerClient({ pid: TEST_PID, secret: TEST_SECRET, endpoint: server.serverEndpoint, autoReconnect: false });
    await sender.connect();
    // The sender hears every event too: the only sign that a logout was published when the
    // listener does not listen to it.
    sender.on('event', (e) => {
      if (e.event === 'logout') logouts.push(e.uid);
    });
    await sender.setListen({ events: true });
  });
  after(async () => {
    await sender.close();
    await server.close();
  });

  it('the listener gets every matching message and event once, in order, and nothing else', { timeout: 120_000 }, async () => {
    await assertModel(
      fc.asyncProperty(modelCommands(commands, 40), async (cmds) => {
        // A fresh listening connection and fresh ids for every sequence.
        const listener = new RTMServerClient({
          pid: TEST_PID,
          secret: TEST_SECRET,
          endpoint: server.serverEndpoint,
          autoReconnect: false,
        });
        await listener.connect();
        const uids = Array.from({ length: USERS }, () => ++nextId);
        const gids = Array.from({ length: PLACES }, () => ++nextId);
        const rids = Array.from({ length: PLACES }, () => ++nextId);
        const poster = ++nextId;
        for (const gid of gids) await sender.addGroupMembers(gid, [poster]);
        for (const rid of rids) await sender.addRoomMember(rid, poster);
        const world = new World(server, listener, sender, uids, gids, rids, poster, logouts);
        try {
          const model = new Model();
          await fc.asyncModelRun(() => ({ model, real: world }), cmds);
          await new Check().run(model, world);
        } finally {
          for (const c of world.clients) c?.close();
          await listener.close();
        }
      }),
    );
  });
});
