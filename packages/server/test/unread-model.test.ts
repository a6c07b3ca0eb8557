import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import fc from 'fast-check';
import { RTMClient } from '@rtm/client-sdk';
import { RTMServerClient } from '@rtm/server-sdk';
import type { TestServer } from '@rtm/testkit';
import {
  assertModel,
  modelCommands,
  Deployment,
  endSession,
  GroupMember,
  loginClient,
  pastGraceIfNear,
  Restart,
  sleep,
  untilAnswered,
  WaitPastGrace,
} from './helpers/model-run.js';
import { SqliteStore } from '../src/store/sqlite.js';

// Model-based test of unread counting, pushes and history (client-api.md §3.3 "Unread baseline",
// §5 pushes), end to end through both SDKs. fast-check draws sequences of sends (server gate and
// client gate, p2p and group, counted and uncounted mtypes), logins on two devices per user,
// logouts (`bye`), network drops with and without a return inside the grace period, restarts of the
// server (every session drops; grace periods go on in the new process), clears (three ways) and
// checks; a model that only knows the order of events says what every answer must be:
// - unread: messages to me, from others, after my baseline = the later of my last clear and the
//   end of my last session (a drop ends it only when the grace period passes without a return);
//   a group's only while I am in it, and only those sent since I joined (the backend adds and
//   removes members);
// - pushes: every device gets each message to its user sent while it was logged in, once, in order;
// - history: every message between two users, in send order.
// Run twice: with the store's real clock, and with the store's clock stopped, where every message,
// clear and logout falls in the same millisecond and only the store's unread marks keep them apart.

const GRACE_MS = 600;
const USERS = 3;
const SLOTS = 2;
const COUNTED = (mtype: number) => mtype >= 30 && mtype <= 50; // the typed counts' default mtypes

interface Sent {
  kind: 'p2p' | 'group';
  from: number;
  /** User index (p2p); unused for the group. */
  to: number;
  mtype: number;
  mid: bigint;
  mtime: bigint;
  /** Group: who was in the group when it was sent. */
  members?: boolean[];
}

/** What the test knows: the order of events, nothing of the server's clock. */
class Model {
  readonly sent: Sent[] = [];
  /** Per user: messages before this index are read. */
  readonly baseline = new Array<number>(USERS).fill(0);
  /** Per user and slot: the index from which the logged-in device should get pushes. */
  readonly online: (number | undefined)[][] = Array.from({ length: USERS }, () => new Array(SLOTS).fill(undefined));
  /** Per user: the last session dropped without `bye` (index and when), the grace period running. */
  readonly dropped: ({ index: number; at: number } | undefined)[] = new Array(USERS).fill(undefined);
  /** Per user: in the group now, and since which message (a group message counts for those it was sent to). */
  readonly inGroup = new Array<boolean>(USERS).fill(true);
  readonly joinedAt = new Array<number>(USERS).fill(0);

  isOnline(u: number): boolean {
    return this.sessionsOf(u) > 0;
  }
  sessionsOf(u: number): number {
    return this.online[u]!.filter((s) => s !== undefined).length;
  }
  /** Is message `m` for user `u` (pushed to u, counted for u)? */
  forUser(m: Sent, u: number): boolean {
    return m.from !== u && (m.kind === 'group' ? m.members![u]! : m.to === u);
  }
  /** After the baseline, for u; a group's only while u is in it, and since u joined. */
  unread(u: number, counted = COUNTED): Sent[] {
    return this.sent.filter(
      (m, i) =>
        i >= this.baseline[u]! &&
        this.forUser(m, u) &&
        counted(m.mtype) &&
        (m.kind !== 'group' || (this.inGroup[u]! && i >= this.joinedAt[u]!)),
    );
  }
  endGrace(u: number): void {
    const d = this.dropped[u];
    if (d) this.baseline[u] = Math.max(this.baseline[u]!, d.index);
    this.dropped[u] = undefined;
  }
}

/** The server side of one run: fresh users, a group of all of them, their devices. */
class World {
  readonly devices: (Device | undefined)[][] = Array.from({ length: USERS }, () => new Array(SLOTS).fill(undefined));
  constructor(
    readonly deployment: Deployment,
    readonly uids: bigint[],
    readonly gid: bigint,
  ) {}
  get server(): TestServer {
    return this.deployment.server;
  }
  get backend(): RTMServerClient {
    return this.deployment.backend;
  }

  closeAll(): void {
    for (const row of this.devices) for (const d of row) d?.client.close();
  }
}

class Device {
  readonly got: bigint[] = [];
  constructor(readonly client: RTMClient) {
    client.on('message', (m) => this.got.push(m.mid));
    client.on('groupMessage', (m) => this.got.push(m.mid));
  }
}

type Cmd = fc.AsyncCommand<Model, World>;
const idx = (m: Map<bigint, unknown>) => new Map([...m].map(([k, v]) => [String(k), v]));

class Send implements Cmd {
  constructor(
    readonly via: 'server' | number, // a slot of the sender's devices
    readonly kind: 'p2p' | 'group',
    readonly from: number,
    readonly to: number,
    readonly mtype: number,
  ) {}
  check(m: Readonly<Model>): boolean {
    if (this.kind === 'p2p' && this.from === this.to) return false;
    if (this.kind === 'group' && !m.inGroup[this.from]) return false; // refused (rooms-model checks that)
    return this.via === 'server' || m.online[this.from]![this.via] !== undefined;
  }
  async run(m: Model, w: World): Promise<void> {
    const text = `m${m.sent.length}`;
    const to = this.kind === 'group' ? w.gid : w.uids[this.to]!;
    let r: { mid: bigint; mtime: bigint };
    if (this.via === 'server') {
      const from = w.uids[this.from]!;
      r = await (this.kind === 'p2p'
        ? w.backend.sendMessage(this.mtype, from, to, text)
        : w.backend.sendGroupMessage(this.mtype, from, to, text));
    } else {
      const c = w.devices[this.from]![this.via]!.client;
      r = await (this.kind === 'p2p' ? c.sendMessage(to, this.mtype, text) : c.sendGroupMessage(to, this.mtype, text));
    }
    const members = this.kind === 'group' ? [...m.inGroup] : undefined;
    m.sent.push({ kind: this.kind, from: this.from, to: this.to, mtype: this.mtype, mid: r.mid, mtime: r.mtime, members });
  }
  toString(): string {
    return `send(${this.via}, ${this.kind}, ${this.from}→${this.kind === 'group' ? 'G' : this.to}, mtype ${this.mtype})`;
  }
}

class Login implements Cmd {
  constructor(
    readonly u: number,
    readonly slot: number,
  ) {}
  check(m: Readonly<Model>): boolean {
    return m.online[this.u]![this.slot] === undefined;
  }
  async run(m: Model, w: World): Promise<void> {
    if (await pastGraceIfNear(m.dropped[this.u]?.at, GRACE_MS)) m.endGrace(this.u);
    m.dropped[this.u] = undefined; // back inside the grace period: the same presence goes on
    await loginClient(
      w.server.clientEndpoint,
      w.backend,
      w.uids[this.u]!,
      (client) => (w.devices[this.u]![this.slot] = new Device(client)),
    );
    m.online[this.u]![this.slot] = m.sent.length;
  }
  toString(): string {
    return `login(${this.u}/${this.slot})`;
  }
}

/** `bye` (the user logs out) or a network drop (the socket closes, the grace period starts). */
class Leave implements Cmd {
  constructor(
    readonly u: number,
    readonly slot: number,
    readonly how: 'bye' | 'drop',
  ) {}
  check(m: Readonly<Model>): boolean {
    return m.online[this.u]![this.slot] !== undefined;
  }
  async run(m: Model, w: World): Promise<void> {
    const device = w.devices[this.u]![this.slot]!;
    w.devices[this.u]![this.slot] = undefined;
    m.online[this.u]![this.slot] = undefined;
    await endSession(device.client, this.how, m.sessionsOf(this.u), w.backend, w.uids[this.u]!, w.server);
    if (m.isOnline(this.u)) return;
    if (this.how === 'bye') m.baseline[this.u] = m.sent.length;
    else m.dropped[this.u] = { index: m.sent.length, at: performance.now() };
  }
  toString(): string {
    return `${this.how}(${this.u}/${this.slot})`;
  }
}

/** Marks everything read: `cleanunread`, `getunread` with clear, or `getunreadconversationlist` (clears by default). */
class Clear implements Cmd {
  constructor(
    readonly u: number,
    readonly slot: number,
    readonly how: 'cleanunread' | 'getunread' | 'conversations',
  ) {}
  check(m: Readonly<Model>): boolean {
    return m.online[this.u]![this.slot] !== undefined;
  }
  async run(m: Model, w: World): Promise<void> {
    const c = w.devices[this.u]![this.slot]!.client;
    if (this.how === 'cleanunread') await c.cleanUnreadMessage();
    else if (this.how === 'getunread') assertOverview(m, w, this.u, await c.getUnreadMessage(true));
    else assertConversations(m, w, this.u, await c.getUnreadConversationList());
    m.baseline[this.u] = m.sent.length;
  }
  toString(): string {
    return `clear(${this.u}/${this.slot}, ${this.how})`;
  }
}

function assertOverview(m: Model, w: World, u: number, got: { p2p: bigint[]; group: bigint[] }): void {
  const news = m.unread(u, () => true); // getunread counts every mtype
  const p2p = new Set(news.filter((s) => s.kind === 'p2p').map((s) => w.uids[s.from]!));
  assert.deepEqual(new Set(got.p2p), p2p, 'getunread p2p');
  assert.deepEqual(got.group, news.some((s) => s.kind === 'group') ? [w.gid] : [], 'getunread group');
}

function assertConversations(
  m: Model,
  w: World,
  u: number,
  got: { p2p: { id: bigint; unread: number }[]; group: { id: bigint; unread: number }[] },
): void {
  const p2p = new Map<string, number>();
  const group = new Map<string, number>();
  for (const s of m.unread(u)) {
    if (s.kind === 'group') group.set(String(w.gid), (group.get(String(w.gid)) ?? 0) + 1);
    else p2p.set(String(w.uids[s.from]), (p2p.get(String(w.uids[s.from])) ?? 0) + 1);
  }
  assert.deepEqual(new Map(got.p2p.map((c) => [String(c.id), c.unread])), p2p, 'unread conversation list, p2p');
  assert.deepEqual(new Map(got.group.map((c) => [String(c.id), c.unread])), group, 'unread conversation list, group');
}

/** Every count and list of the user, and every online device's pushes. */
class Check implements Cmd {
  constructor(
    readonly u: number,
    readonly slot: number,
  ) {}
  check(m: Readonly<Model>): boolean {
    return m.online[this.u]![this.slot] !== undefined;
  }
  async run(m: Model, w: World): Promise<void> {
    const c = w.devices[this.u]![this.slot]!.client;
    const others = w.uids.filter((_, i) => i !== this.u);
    const unread = m.unread(this.u);
    const p2p = new Map<string, number>();
    const p2pTime = new Map<string, bigint>();
    let group = 0;
    let groupTime = 0n;
    for (const s of unread) {
      if (s.kind === 'group') {
        group++;
        groupTime = s.mtime;
      } else {
        const peer = String(w.uids[s.from]);
        p2p.set(peer, (p2p.get(peer) ?? 0) + 1);
        p2pTime.set(peer, s.mtime);
      }
    }
    const gotP2P = await c.getP2PUnreadMessageNum(others);
    assert.deepEqual(idx(gotP2P.p2p), p2p, 'getp2punread counts');
    assert.deepEqual(idx(gotP2P.ltime), p2pTime, 'getp2punread ltime');
    const gotGroup = await c.getGroupUnreadMessageNum([w.gid]);
    assert.deepEqual(idx(gotGroup.group), group ? new Map([[String(w.gid), group]]) : new Map(), 'getgroupunread counts');
    assert.deepEqual(idx(gotGroup.ltime), group ? new Map([[String(w.gid), groupTime]]) : new Map(), 'getgroupunread ltime');
    assertOverview(m, w, this.u, await c.getUnreadMessage(false));
    assertConversations(m, w, this.u, await c.getUnreadConversationList(false));
    await assertPushes(m, w);
  }
  toString(): string {
    return `check(${this.u}/${this.slot})`;
  }
}

async function assertPushes(m: Model, w: World): Promise<void> {
  for (let u = 0; u < USERS; u++) {
    for (let slot = 0; slot < SLOTS; slot++) {
      const from = m.online[u]![slot];
      if (from === undefined) continue;
      const device = w.devices[u]![slot]!;
      const want = m.sent
        .slice(from)
        .filter((s) => m.forUser(s, u))
        .map((s) => s.mid);
      for (let i = 0; i < 100 && device.got.length < want.length; i++) await sleep(10);
      await sleep(20); // strays
      assert.deepEqual(device.got, want, `pushes to ${u}/${slot}`);
    }
  }
}

/** Both directions of every pair, in send order (the server gate's p2p history). */
class CheckHistory implements Cmd {
  constructor(
    readonly a: number,
    readonly b: number,
  ) {}
  check(): boolean {
    return this.a !== this.b;
  }
  async run(m: Model, w: World): Promise<void> {
    const want = m.sent.filter(
      (s) => s.kind === 'p2p' && ((s.from === this.a && s.to === this.b) || (s.from === this.b && s.to === this.a)),
    );
    const page = await w.backend.getP2PMessage(w.uids[this.a]!, w.uids[this.b]!, false, 100);
    assert.deepEqual(
      page.messages.map((h) => h.mid),
      want.map((s) => s.mid),
      'p2p history',
    );
    const group = await w.backend.getGroupMessage(w.uids[this.a]!, w.gid, false, 100);
    assert.deepEqual(
      group.messages.map((h) => h.mid),
      m.sent.filter((s) => s.kind === 'group').map((s) => s.mid),
      'group history',
    );
  }
  toString(): string {
    return `history(${this.a}, ${this.b})`;
  }
}

const user = fc.integer({ min: 0, max: USERS - 1 });
const slot = fc.integer({ min: 0, max: SLOTS - 1 });
const commands = [
  fc
    .tuple(fc.constantFrom('p2p' as const, 'group' as const), user, user, fc.constantFrom(30, 40, 50, 51, 100))
    .map(([kind, from, to, mtype]) => new Send('server', kind, from, to, mtype)),
  fc
    .tuple(slot, fc.constantFrom('p2p' as const, 'group' as const), user, user, fc.constantFrom(30, 100))
    .map(([via, kind, from, to, mtype]) => new Send(via, kind, from, to, mtype)),
  fc.tuple(user, slot).map(([u, s]) => new Login(u, s)),
  fc.tuple(user, slot).map(([u, s]) => new Login(u, s)),
  fc.tuple(user, slot, fc.constantFrom('bye' as const, 'drop' as const)).map(([u, s, how]) => new Leave(u, s, how)),
  fc.constant(
    new WaitPastGrace<Model>(GRACE_MS, (m) => {
      for (let u = 0; u < USERS; u++) m.endGrace(u);
    }),
  ),
  fc.constant(
    new Restart<Model, World>(
      (m, at) => {
        for (let u = 0; u < USERS; u++) {
          if (m.isOnline(u)) m.dropped[u] = { index: m.sent.length, at };
          m.online[u]!.fill(undefined);
        }
      },
      // The devices have what was pushed to them, and their answers reached the server: a push the
      // stop cuts off unanswered counts as unread (gate/unanswered-pushes.ts), which the model knows not.
      async (m, w) => {
        await assertPushes(m, w);
        for (const uid of w.uids) await untilAnswered(w.server, uid);
      },
    ),
  ),
  fc.tuple(user, fc.boolean()).map(
    ([u, join]) =>
      new GroupMember<Model>(u, join, (m, u, join) => {
        if (join && !m.inGroup[u]) m.joinedAt[u] = m.sent.length; // added again: the first join stays
        m.inGroup[u] = join;
      }),
  ),
  fc
    .tuple(user, slot, fc.constantFrom('cleanunread' as const, 'getunread' as const, 'conversations' as const))
    .map(([u, s, how]) => new Clear(u, s, how)),
  fc.tuple(user, slot).map(([u, s]) => new Check(u, s)),
  fc.tuple(user, slot).map(([u, s]) => new Check(u, s)),
  fc.tuple(user, user).map(([a, b]) => new CheckHistory(a, b)),
];

for (const clock of ['real', 'stopped'] as const) {
  describe(`unread, pushes and history against a model (store clock ${clock})`, () => {
    let deployment: Deployment;
    let nextUid = 1n << 56n; // ids above 2^53
    const stopped = Date.now();

    before(async () => {
      const stoppedStore = (dataDir: string) => new SqliteStore({ dataDir, writerThread: true, now: () => stopped });
      deployment = await Deployment.of({ logoutGraceMs: GRACE_MS }, clock === 'stopped' ? { makeStore: stoppedStore } : {});
    });
    after(() => deployment?.close());

    it('every answer matches the model', { timeout: 120_000 }, async () => {
      await assertModel(
        fc.asyncProperty(modelCommands(commands, 40), async (cmds) => {
          const uids = Array.from({ length: USERS }, () => ++nextUid);
          const gid = ++nextUid;
          await deployment.backend.addGroupMembers(gid, uids);
          const world = new World(deployment, uids, gid);
          try {
            await fc.asyncModelRun(() => ({ model: new Model(), real: world }), cmds);
          } finally {
            world.closeAll();
          }
        }),
      );
    });
  });
}
