import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import fc from 'fast-check';
import { RTMClient, RtmError } from '@rtm/client-sdk';
import { RTMServerClient } from '@rtm/server-sdk';
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
  untilOffline,
  WaitPastGrace,
  type ModelDeployment,
} from './helpers/model-run.js';
import { ClusterDeployment } from './helpers/cluster-deployment.js';
import { clusterServicesUnavailable } from '../../../test/cluster/cluster.js';

// Model-based test of room and group delivery (client-api.md §4 rooms and groups, §5 pushes;
// server-api.md §4 room members), end to end through both SDKs. fast-check draws sequences of
// room entries and exits (client enterroom/leaveroom, server addroommember/delroommember), group
// member changes, logins on two devices, `bye`, drops inside and past the grace period, and room
// and group sends from both gates, kickouts, and restarts of the server. A model of who is where
// says what must happen:
// - a room is "live": a user is in it from entering (or being added) until leaving, being removed,
//   or the end of their presence (the last session gone for good: `bye`, a kickout, or a drop past
//   the grace period); a drop that comes back inside the grace period keeps the room, also across a
//   restart (which drops every session);
// - a room or group message reaches every session of every member but the sender's, once, in
//   order; a removal sends `kickoutroom` to every session of the user;
// - a sender that is not where it sends gets 200040 (room) / 200041 (group), from either gate; a
//   backend sending to a group with no members gets 200046; nothing is pushed then.

const GRACE_MS = 600;
const USERS = 3;
const SLOTS = 2;

class Model {
  readonly inRoom = new Array<boolean>(USERS).fill(false);
  readonly inGroup = new Array<boolean>(USERS).fill(false);
  /** Per user and slot: what the logged-in device must have got (mids, and `kick` for kickoutroom), or undefined. */
  readonly devices: (string[] | undefined)[][] = Array.from({ length: USERS }, () => new Array(SLOTS).fill(undefined));
  /** Per user: when the last session dropped without `bye`, while the grace period runs. */
  readonly dropped: (number | undefined)[] = new Array(USERS).fill(undefined);

  isOnline(u: number): boolean {
    return this.sessionsOf(u) > 0;
  }
  sessionsOf(u: number): number {
    return this.devices[u]!.filter((d) => d !== undefined).length;
  }
  /** The presence ended for good: the user's rooms are left. */
  endPresence(u: number): void {
    this.dropped[u] = undefined;
    this.inRoom[u] = false;
  }
  /** What every session of `u` gets. */
  pushTo(u: number, what: string): void {
    for (const d of this.devices[u]!) d?.push(what);
  }
}

/**
 * Before a step that depends on who is in the room: a grace period the model still counts as
 * running but that has run out, or nearly, by the clock (the steps before took a while: restarts,
 * a loaded machine), is waited out and ended in the model too. Waiting out one user's grace brings
 * the others' nearer, so every user is looked at again until none was waited for.
 */
async function pastNearGraces(m: Model): Promise<void> {
  for (let waited = true; waited;) {
    waited = false;
    for (let u = 0; u < USERS; u++) {
      if (await pastGraceIfNear(m.dropped[u], GRACE_MS)) {
        m.endPresence(u);
        waited = true;
      }
    }
  }
}

class Device {
  readonly got: string[] = [];
  constructor(readonly client: RTMClient) {
    client.on('roomMessage', (m) => this.got.push(String(m.mid)));
    client.on('groupMessage', (m) => this.got.push(String(m.mid)));
    client.on('message', (m) => this.got.push(`unexpected p2p ${m.mid}`));
    client.on('kickoutRoom', () => this.got.push('kick'));
  }
}

class World {
  readonly devices: (Device | undefined)[][] = Array.from({ length: USERS }, () => new Array(SLOTS).fill(undefined));
  constructor(
    readonly deployment: ModelDeployment,
    readonly uids: bigint[],
    readonly gid: bigint,
    readonly rid: bigint,
  ) {}
  get backend(): RTMServerClient {
    return this.deployment.backend;
  }
  client(u: number, slot: number): RTMClient {
    return this.devices[u]![slot]!.client;
  }
}

type Cmd = fc.AsyncCommand<Model, World>;

async function refusedWith(promise: Promise<unknown>, code: number): Promise<void> {
  await assert.rejects(promise, (err: unknown) => err instanceof RtmError && err.code === code, `expected ${code}`);
}

class Login implements Cmd {
  constructor(
    readonly u: number,
    readonly slot: number,
  ) {}
  check(m: Readonly<Model>): boolean {
    return m.devices[this.u]![this.slot] === undefined;
  }
  async run(m: Model, w: World): Promise<void> {
    if (await pastGraceIfNear(m.dropped[this.u], GRACE_MS)) m.endPresence(this.u);
    m.dropped[this.u] = undefined;
    await loginClient(
      w.deployment.clientEndpoint(this.slot),
      w.backend,
      w.uids[this.u]!,
      (client) => (w.devices[this.u]![this.slot] = new Device(client)),
    );
    m.devices[this.u]![this.slot] = [];
  }
  toString(): string {
    return `login(${this.u}/${this.slot})`;
  }
}

class Leave implements Cmd {
  constructor(
    readonly u: number,
    readonly slot: number,
    readonly how: 'bye' | 'drop',
  ) {}
  check(m: Readonly<Model>): boolean {
    return m.devices[this.u]![this.slot] !== undefined;
  }
  async run(m: Model, w: World): Promise<void> {
    const client = w.client(this.u, this.slot);
    w.devices[this.u]![this.slot] = undefined;
    m.devices[this.u]![this.slot] = undefined;
    await endSession(client, this.how, m.sessionsOf(this.u), w.backend, w.uids[this.u]!, w.deployment.servers);
    if (m.isOnline(this.u)) return;
    if (this.how === 'bye') m.endPresence(this.u);
    else m.dropped[this.u] = performance.now();
  }
  toString(): string {
    return `${this.how}(${this.u}/${this.slot})`;
  }
}

/** The backend kicks the user out: every session closes, and the presence ends at once (no grace period). */
class Kickout implements Cmd {
  constructor(readonly u: number) {}
  check(m: Readonly<Model>): boolean {
    return m.isOnline(this.u);
  }
  async run(m: Model, w: World): Promise<void> {
    const uid = w.uids[this.u]!;
    await w.backend.kickout(uid);
    for (let slot = 0; slot < SLOTS; slot++) {
      w.devices[this.u]![slot] = undefined;
      m.devices[this.u]![slot] = undefined;
    }
    await untilOffline(w.backend, uid);
    // Well within GRACE_MS: the rooms are left at once.
    for (const until = performance.now() + GRACE_MS / 2; (await w.backend.getRoomMembers(w.rid)).includes(uid); await sleep(10)) {
      assert.ok(performance.now() < until, 'the kicked-out user is still in the room');
    }
    m.endPresence(this.u);
  }
  toString(): string {
    return `kickout(${this.u})`;
  }
}

/** Into or out of the room: the user itself (client, from a device) or a backend (server gate). */
class Room implements Cmd {
  constructor(
    readonly u: number,
    readonly via: 'server' | number,
    readonly enter: boolean,
  ) {}
  check(m: Readonly<Model>): boolean {
    return this.via === 'server' || m.devices[this.u]![this.via] !== undefined;
  }
  async run(m: Model, w: World): Promise<void> {
    await pastNearGraces(m);
    const uid = w.uids[this.u]!;
    if (this.via === 'server') {
      await (this.enter ? w.backend.addRoomMember(w.rid, uid) : w.backend.deleteRoomMember(w.rid, uid));
      // A removal by the backend tells every session of the user (oneway kickoutroom).
      if (!this.enter && m.inRoom[this.u]) m.pushTo(this.u, 'kick');
    } else {
      const c = w.client(this.u, this.via);
      await (this.enter ? c.enterRoom(w.rid) : c.leaveRoom(w.rid));
    }
    m.inRoom[this.u] = this.enter;
  }
  toString(): string {
    return `${this.enter ? 'enter' : 'leave'}Room(${this.u}, ${this.via})`;
  }
}

class Send implements Cmd {
  constructor(
    readonly kind: 'room' | 'group',
    readonly from: number,
    readonly via: 'server' | number,
  ) {}
  check(m: Readonly<Model>): boolean {
    return this.via === 'server' || m.devices[this.from]![this.via] !== undefined;
  }
  async run(m: Model, w: World): Promise<void> {
    await pastNearGraces(m);
    await w.deployment.settle(); // in a cluster, every node knows of the membership changes before
    const members = this.kind === 'room' ? m.inRoom : m.inGroup;
    const to = this.kind === 'room' ? w.rid : w.gid;
    const send =
      this.via === 'server'
        ? this.kind === 'room'
          ? w.backend.sendRoomMessage(30, w.uids[this.from]!, to, 'r')
          : w.backend.sendGroupMessage(30, w.uids[this.from]!, to, 'g')
        : this.kind === 'room'
          ? w.client(this.from, this.via).sendRoomMessage(to, 30, 'r')
          : w.client(this.from, this.via).sendGroupMessage(to, 30, 'g');
    // A backend is told first of a group with no members; then the sender must be where it sends,
    // from either gate (RTM_SERVER_SEND_REQUIRES_MEMBERSHIP, default true).
    if (this.via === 'server' && this.kind === 'group' && !members.some(Boolean)) return refusedWith(send, 200046);
    if (!members[this.from]) return refusedWith(send, this.kind === 'room' ? 200040 : 200041);
    const { mid } = await send;
    for (let u = 0; u < USERS; u++) if (members[u] && u !== this.from) m.pushTo(u, String(mid));
  }
  toString(): string {
    return `send(${this.kind}, from ${this.from}, via ${this.via})`;
  }
}

/** Every device's pushes, the user's rooms as the client sees them, and the room's members. */
class Check implements Cmd {
  check(): boolean {
    return true;
  }
  async run(m: Model, w: World): Promise<void> {
    await pastNearGraces(m);
    await w.deployment.settle();
    // Memberships first: a presence dropped less than half a grace period ago still holds its
    // rooms, but only until its grace period ends, and the waits for pushes below may outlast that
    // on a loaded machine (seen: getroommembers empty after a restart, the model right).
    const inRoom = w.uids.filter((_, u) => m.inRoom[u]);
    assert.deepEqual(new Set(await w.backend.getRoomMembers(w.rid)), new Set(inRoom), 'getroommembers');
    const inGroup = w.uids.filter((_, u) => m.inGroup[u]);
    assert.deepEqual(new Set(await w.backend.getGroupMembers(w.gid)), new Set(inGroup), 'getgroupmembers');
    for (let u = 0; u < USERS; u++) {
      for (let slot = 0; slot < SLOTS; slot++) {
        const want = m.devices[u]![slot];
        if (!want) continue;
        const device = w.devices[u]![slot]!;
        for (let i = 0; i < 100 && device.got.length < want.length; i++) await sleep(10);
        await sleep(20); // strays
        assert.deepEqual(device.got, want, `pushes to ${u}/${slot}`);
        assert.deepEqual(await device.client.getUserRooms(), m.inRoom[u] ? [w.rid] : [], `getuserrooms of ${u}`);
      }
    }
  }
  toString(): string {
    return 'check';
  }
}

const user = fc.integer({ min: 0, max: USERS - 1 });
const slot = fc.integer({ min: 0, max: SLOTS - 1 });
const via = fc.oneof(fc.constant('server' as const), slot);
const commands = [
  fc.tuple(user, slot).map(([u, s]) => new Login(u, s)),
  fc.tuple(user, slot).map(([u, s]) => new Login(u, s)),
  fc.tuple(user, slot, fc.constantFrom('bye' as const, 'drop' as const)).map(([u, s, how]) => new Leave(u, s, how)),
  fc.constant(
    new WaitPastGrace<Model>(
      GRACE_MS,
      (m) => {
        for (let u = 0; u < USERS; u++) if (m.dropped[u] !== undefined) m.endPresence(u);
      },
      true, // also while a user's other device stays: its session keeps the rooms
    ),
  ),
  user.map((u) => new Kickout(u)),
  fc.constant(
    new Restart<Model, World>((m, at) => {
      for (let u = 0; u < USERS; u++) {
        if (m.isOnline(u)) m.dropped[u] = at;
        m.devices[u]!.fill(undefined);
      }
    }),
  ),
  fc.tuple(user, via, fc.boolean()).map(([u, v, enter]) => new Room(u, v, enter)),
  fc.tuple(user, via, fc.constant(true)).map(([u, v, enter]) => new Room(u, v, enter)),
  fc.tuple(user, fc.boolean()).map(([u, join]) => new GroupMember<Model>(u, join, (m, u, join) => (m.inGroup[u] = join))),
  fc.tuple(fc.constantFrom('room' as const, 'group' as const), user, via).map(([kind, from, v]) => new Send(kind, from, v)),
  fc.tuple(fc.constantFrom('room' as const, 'group' as const), user, via).map(([kind, from, v]) => new Send(kind, from, v)),
  fc.constant(new Check()),
];

/** The property, on a deployment made by `deploy`. */
function deliveryMatchesTheModel(deploy: () => Promise<ModelDeployment>, runs: number, skip?: string | false): void {
  let deployment: ModelDeployment | undefined;
  let nextId = 1n << 57n; // ids above 2^53

  before(async () => {
    if (!skip) deployment = await deploy();
  });
  after(() => deployment?.close());

  it('every push, refusal and membership matches the model', { timeout: 120_000, skip }, async () => {
    await assertModel(
      fc.asyncProperty(modelCommands(commands, 40), async (cmds) => {
        const uids = Array.from({ length: USERS }, () => ++nextId);
        const world = new World(deployment!, uids, ++nextId, ++nextId);
        try {
          const model = new Model();
          await fc.asyncModelRun(() => ({ model, real: world }), cmds);
          await new Check().run(model, world); // whatever the sequence ended with
        } finally {
          for (const row of world.devices) for (const d of row) d?.client.close();
        }
      }),
      runs,
    );
  });
}

describe('room and group delivery against a model', () => {
  deliveryMatchesTheModel(() => Deployment.of({ logoutGraceMs: GRACE_MS }), 12);
});

// The same on two nodes: a user's devices on different nodes (slot s on node s), the backend on
// node 0; presences that go on, or end, across nodes.
const CI = process.env['CI'] === 'true';
const unavailable = await clusterServicesUnavailable();
describe('room and group delivery against a model, on a 2-node cluster (PostgreSQL + NATS)', () => {
  if (unavailable && CI) it('runs on a real cluster (required when CI=true)', () => assert.fail(unavailable));
  // Fewer runs by default than on one server: each takes two or three times as long.
  else deliveryMatchesTheModel(() => ClusterDeployment.of(2, { logoutGraceMs: GRACE_MS }), 6, unavailable);
});
