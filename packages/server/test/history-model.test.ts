import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import fc from 'fast-check';
import { RtmError, type RTMClient } from '@rtm/client-sdk';
import { RTMServerClient } from '@rtm/server-sdk';
import { startTestServer, TEST_PID, TEST_SECRET, type TestServer } from '@rtm/testkit';
import { assertModel, modelCommands, loginClient } from './helpers/model-run.js';
import { clusterServicesUnavailable, startCluster, type Cluster } from '../../../test/cluster/cluster.js';

// Model-based test of what is stored (server-api.md §2 sends, §3 history, single message,
// deletion, counts; client-api.md §3.2, §3.4), end to end through both SDKs. fast-check draws
// sequences of p2p, multi-user, group, room and broadcast sends from both gates (text and binary
// bodies), resends of a mid (same content: idempotent; other content: 200053), deletions (by the
// backend, by the sender, by someone else: 200021), reads of one message, counts, and history
// queries with every option: desc or not, page sizes over the cap, begin / end drawn at, just
// before and just after stored mtimes (many share a millisecond), mtypes filters. A query reads
// every page, passing each answer's cursor back as the SDKs' callers do. A list of what was sent
// says what every answer must be:
// - a conversation's history is its messages that are not deleted, in the window and of the types,
//   in send order (reversed for desc), split into pages of min(num, cap) — every page full but the
//   last, then an empty one; ids increase in send order; cursors per the spec's proposal;
// - getmsg answers a stored message as sent (200070 once deleted); getmsgnum counts them (a begin
//   after end is 200034, for counts as for history).
// Runs on one node (SQLite), and on two nodes sharing PostgreSQL and NATS (the backend and the
// clients spread over both) when those are reachable.

const USERS = 3;
const MAX_NUM = 5; // RTM_HISTORY_MAX_NUM of the servers under test: a page never holds more
// Paging with pages of one calls more often than a client's default rate limit allows.
const UNLIMITED = { clientCallsPerSecond: 0 };
const MTYPES = [30, 31, 40, 77];
const DUPLICATED_MID = 200053;

type Kind = 'p2p' | 'group' | 'room' | 'broadcast';
const TYPE: Record<Kind, 1 | 2 | 3 | 4> = { p2p: 1, group: 2, room: 3, broadcast: 4 };

interface Sent {
  kind: Kind;
  from: bigint;
  /** Receiver uid (p2p), gid, rid or 0n. */
  to: bigint;
  mtype: number;
  mid: bigint;
  body: string | Uint8Array;
  attrs: string;
  mtime: bigint;
  deleted: boolean;
  /** The cursor id, once an answer has shown it: it never changes. */
  id?: bigint;
}

interface Deployment {
  backends: RTMServerClient[];
  clientEndpoint(u: number): string;
}

class Model {
  /** Every message stored, in send (and id) order; starts with the broadcasts of earlier runs. */
  readonly sent: Sent[] = [];
  constructor(readonly uids: bigint[]) {}

  /** The messages of a history query's conversation, oldest first, deleted ones included. */
  conversation(q: { kind: Kind; reader: number; peer: number }, gid: bigint, rid: bigint): Sent[] {
    const me = this.uids[q.reader]!;
    const peer = this.uids[q.peer]!;
    return this.sent.filter((s) => {
      if (s.kind !== q.kind) return false;
      if (s.kind === 'p2p') return (s.from === me && s.to === peer) || (s.from === peer && s.to === me);
      if (s.kind === 'group') return s.to === gid;
      if (s.kind === 'room') return s.to === rid;
      return true;
    });
  }

  /** A time at, just before or just after the mtime of a message of `among` (else of any) drawn by `pick`. */
  time(pick: [number, bigint] | null, among: readonly Sent[]): bigint | undefined {
    const from = among.length ? among : this.sent;
    if (!pick || from.length === 0) return undefined;
    return from[pick[0] % from.length]!.mtime + pick[1];
  }
}

/** The messages of `conversation` a query or count selects: not deleted, in [begin, end], of `mtypes` (none or empty: all). */
function selected(conversation: readonly Sent[], begin: bigint | undefined, end: bigint | undefined, mtypes: number[] | null): Sent[] {
  return conversation.filter(
    (s) =>
      !s.deleted &&
      (begin === undefined || s.mtime >= begin) &&
      (end === undefined || s.mtime <= end) &&
      (!mtypes?.length || mtypes.includes(s.mtype)),
  );
}

/** A history entry as both SDKs give it (the client's p2p entries have `direction`, the server's `toId`). */
interface Entry {
  id: bigint;
  fromUid: bigint;
  mtype: number;
  mid: bigint;
  message: string | Uint8Array;
  attrs: string;
  mtime: bigint;
  deleted: boolean;
  direction?: number;
  toId?: bigint;
}

/** What a page entry says, comparable with `expected` (a body's kind matters: text stays text). */
const seen = (m: Entry) => ({
  from: m.fromUid,
  mtype: m.mtype,
  mid: m.mid,
  body: bodyOf(m.message),
  attrs: m.attrs,
  mtime: m.mtime,
  deleted: m.deleted,
});
const expected = (s: Sent, reader: 'server' | 'client') => ({
  from: s.from,
  mtype: s.mtype,
  mid: s.mid,
  body: bodyAsRead(s, reader),
  attrs: s.attrs,
  mtime: s.mtime,
  deleted: false,
});
const bodyOf = (b: string | Uint8Array) => (typeof b === 'string' ? `text ${b}` : `binary ${Buffer.from(b).toString('hex')}`);
/** Chat, audio and cmd (30–32) and file (40–50) bodies: a client reads them as text (client-api.md §7). */
const clientText = (mtype: number) => (mtype >= 30 && mtype <= 32) || (mtype >= 40 && mtype <= 50);
/** A sent body as its reader gets it: a client reads the text types as text (the bodies here are UTF-8), a backend as sent. */
const bodyAsRead = (s: Sent, reader: 'server' | 'client') =>
  bodyOf(reader === 'client' && clientText(s.mtype) && typeof s.body !== 'string' ? new TextDecoder().decode(s.body) : s.body);

async function refusedWith(promise: Promise<unknown>, code: number, what: string): Promise<void> {
  await assert.rejects(promise, (err: unknown) => err instanceof RtmError && err.code === code, `${what}: expected ${code}`);
}

class World {
  readonly clients: RTMClient[] = [];
  private bodies = 0;
  constructor(
    readonly deployment: Deployment,
    readonly uids: bigint[],
    readonly gid: bigint,
    readonly rid: bigint,
  ) {}

  backend(b: number): RTMServerClient {
    return this.deployment.backends[b % this.deployment.backends.length]!;
  }

  /** Every user logged in (on its node), in the group and in the room. */
  async setUp(): Promise<void> {
    const backend = this.backend(0);
    for (let u = 0; u < USERS; u++) this.clients.push(await loginClient(this.deployment.clientEndpoint(u), backend, this.uids[u]!));
    await backend.addGroupMembers(this.gid, this.uids);
    for (const c of this.clients) await c.enterRoom(this.rid);
  }

  nextBody(binary: boolean): string | Uint8Array {
    const text = `b${++this.bodies}`;
    return binary ? new TextEncoder().encode(text) : text;
  }

  close(): void {
    for (const c of this.clients) c.close();
  }
}

type Cmd = fc.AsyncCommand<Model, World>;
type Via = { gate: 'server'; b: number } | { gate: 'client'; u: number };
const viaText = (v: Via) => (v.gate === 'server' ? `server${v.b}` : `client${v.u}`);

/** One or more messages in a row from one sender to one target, of the types in `mtypes`. */
class Send implements Cmd {
  constructor(
    readonly kind: Kind | 'multi',
    readonly from: number,
    readonly pick: number,
    readonly mtypes: number[],
    readonly binary: boolean,
    readonly via: 'server' | 'client',
    readonly b: number,
  ) {}
  check(): boolean {
    // Clients send p2p, group and room messages; chat text (30) is text.
    return (this.via === 'server' || ['p2p', 'group', 'room'].includes(this.kind)) && !(this.binary && this.mtypes.includes(30));
  }
  async run(m: Model, w: World): Promise<void> {
    for (const mtype of this.mtypes) await this.sendOne(m, w, mtype);
  }
  private async sendOne(m: Model, w: World, mtype: number): Promise<void> {
    const from = w.uids[this.from]!;
    const others = w.uids.filter((_, u) => u !== this.from);
    const to = others[this.pick % others.length]!;
    const body = w.nextBody(this.binary);
    const attrs = this.pick % 2 ? `{"n":${this.pick}}` : '';
    const backend = w.backend(this.b);
    const client = w.clients[this.from]!;
    const server = this.via === 'server';
    let r: { mid: bigint; mtime: bigint };
    let targets: bigint[];
    switch (this.kind) {
      case 'p2p':
        r = await (server ? backend.sendMessage(mtype, from, to, body, attrs) : client.sendMessage(to, mtype, body, attrs));
        targets = [to];
        break;
      case 'multi':
        targets = this.pick % 3 === 0 ? [to] : others;
        r = await backend.sendMessages(mtype, from, targets, body, attrs);
        break;
      case 'group':
        r = await (server ? backend.sendGroupMessage(mtype, from, w.gid, body, attrs) : client.sendGroupMessage(w.gid, mtype, body, attrs));
        targets = [w.gid];
        break;
      case 'room':
        r = await (server ? backend.sendRoomMessage(mtype, from, w.rid, body, attrs) : client.sendRoomMessage(w.rid, mtype, body, attrs));
        targets = [w.rid];
        break;
      case 'broadcast':
        r = await backend.sendBroadcastMessage(mtype, from, body, attrs);
        targets = [0n];
        break;
    }
    const kind = this.kind === 'multi' ? 'p2p' : this.kind;
    for (const t of targets) m.sent.push({ kind, from, to: t, mtype: mtype, mid: r.mid, body, attrs, mtime: r.mtime, deleted: false });
  }
  toString(): string {
    return `send(${this.kind}, from ${this.from}, pick ${this.pick}, mtypes ${this.mtypes}${this.binary ? ', binary' : ''}, ${this.via}${this.b})`;
  }
}

/** The same mid again: with the same content an idempotent resend (the first mtime, nothing new); else 200053. */
class Resend implements Cmd {
  constructor(
    readonly pick: number,
    readonly changed: boolean,
    readonly via: 'server' | 'client',
    readonly b: number,
  ) {}
  check(m: Readonly<Model>): boolean {
    return m.sent.some((s) => m.uids.includes(s.from));
  }
  async run(m: Model, w: World): Promise<void> {
    const mine = m.sent.filter((s) => m.uids.includes(s.from));
    const s = mine[this.pick % mine.length]!;
    const body = this.changed ? w.nextBody(typeof s.body !== 'string') : s.body;
    const backend = w.backend(this.b);
    const client = w.clients[m.uids.indexOf(s.from)]!;
    const opts = { mid: s.mid };
    const viaClient = this.via === 'client' && s.kind !== 'broadcast';
    const send =
      s.kind === 'p2p'
        ? viaClient
          ? client.sendMessage(s.to, s.mtype, body, s.attrs, s.mid)
          : backend.sendMessage(s.mtype, s.from, s.to, body, s.attrs, opts)
        : s.kind === 'group'
          ? viaClient
            ? client.sendGroupMessage(s.to, s.mtype, body, s.attrs, s.mid)
            : backend.sendGroupMessage(s.mtype, s.from, s.to, body, s.attrs, opts)
          : s.kind === 'room'
            ? viaClient
              ? client.sendRoomMessage(s.to, s.mtype, body, s.attrs, s.mid)
              : backend.sendRoomMessage(s.mtype, s.from, s.to, body, s.attrs, opts)
            : backend.sendBroadcastMessage(s.mtype, s.from, body, s.attrs, opts);
    if (this.changed) return refusedWith(send, DUPLICATED_MID, 'a mid reused for other content');
    assert.equal((await send).mtime, s.mtime, 'a resend answers the first mtime');
  }
  toString(): string {
    return `resend(pick ${this.pick}${this.changed ? ', changed' : ''}, ${this.via}${this.b})`;
  }
}

/** A command on one message, drawn by `pick` from those sent, through `via`. */
abstract class OnOneMessage implements Cmd {
  constructor(
    readonly pick: number,
    readonly via: Via,
  ) {}
  check(m: Readonly<Model>): boolean {
    return m.sent.length > 0;
  }
  protected picked(m: Model): Sent {
    return m.sent[this.pick % m.sent.length]!;
  }
  abstract run(m: Model, w: World): Promise<void>;
}

class Delete extends OnOneMessage {
  async run(m: Model, w: World): Promise<void> {
    const s = this.picked(m);
    const type = TYPE[s.kind];
    const del =
      this.via.gate === 'server'
        ? w.backend(this.via.b).deleteMessage(s.mid, s.from, s.to, type)
        : w.clients[this.via.u]!.deleteMessage(s.from, s.mid, s.to, type);
    if (this.via.gate === 'client' && w.uids[this.via.u] !== s.from) return refusedWith(del, 200021, 'deleting what another user sent');
    if (s.deleted) return refusedWith(del, 200070, 'deleting a deleted message');
    await del;
    s.deleted = true;
  }
  override toString(): string {
    return `delete(pick ${this.pick}, ${viaText(this.via)})`;
  }
}

class GetOne extends OnOneMessage {
  constructor(
    pick: number,
    via: Via,
    readonly peerAsXid: boolean,
  ) {
    super(pick, via);
  }
  async run(m: Model, w: World): Promise<void> {
    const s = this.picked(m);
    const type = TYPE[s.kind];
    let get;
    if (this.via.gate === 'server') {
      get = w.backend(this.via.b).getMessage(s.mid, s.from, s.to, type);
    } else {
      const me = w.uids[this.via.u]!;
      // A p2p receiver may name the message by its peer (the sender) or by itself (the receiver).
      const xid = s.kind === 'p2p' && me === s.to && this.peerAsXid ? s.from : s.to;
      get = w.clients[this.via.u]!.getMessage(s.from, s.mid, xid, type);
      if (s.kind === 'p2p' && me !== s.from && me !== s.to) return refusedWith(get, 200021, 'reading a p2p message of others');
    }
    if (s.deleted) return refusedWith(get, 200070, 'reading a deleted message');
    const got = await get;
    assert.deepEqual(
      { mtype: got.mtype, body: bodyOf(got.message), attrs: got.attrs, mtime: got.mtime },
      { mtype: s.mtype, body: bodyAsRead(s, this.via.gate), attrs: s.attrs, mtime: s.mtime },
      'getmsg',
    );
    if (s.id !== undefined) assert.equal(got.id, s.id, 'getmsg id = the history id');
    s.id = got.id;
  }
  override toString(): string {
    return `get(pick ${this.pick}${this.peerAsXid ? ', xid = peer' : ''}, ${viaText(this.via)})`;
  }
}

class Count implements Cmd {
  constructor(
    readonly kind: 'group' | 'room',
    readonly mtypes: number[] | null,
    readonly begin: [number, bigint] | null,
    readonly end: [number, bigint] | null,
    readonly b: number,
  ) {}
  check(): boolean {
    return true;
  }
  async run(m: Model, w: World): Promise<void> {
    const to = this.kind === 'group' ? w.gid : w.rid;
    const conversation = m.sent.filter((s) => s.kind === this.kind && s.to === to);
    const begin = m.time(this.begin, conversation);
    const end = m.time(this.end, conversation);
    const count = w.backend(this.b).getMessageNum(TYPE[this.kind] as 2 | 3, to, { mtypes: this.mtypes ?? undefined, begin, end });
    if (begin !== undefined && end !== undefined && begin > end) return refusedWith(count, 200034, 'begin after end, as for history');
    const want = selected(conversation, begin, end, this.mtypes);
    const got = await count;
    assert.deepEqual(got, { sender: new Set(want.map((s) => s.from)).size, num: want.length }, `getmsgnum ${begin}..${end}`);
  }
  toString(): string {
    return `count(${this.kind}, mtypes ${JSON.stringify(this.mtypes)}, begin ${this.begin}, end ${this.end}, server${this.b})`;
  }
}

interface Page {
  num: number;
  lastid: bigint;
  begin: bigint;
  end: bigint;
  messages: Entry[];
}

/** Reads a conversation's history page by page, each page's cursor passed back to the next. */
class Query implements Cmd {
  constructor(
    readonly kind: Kind,
    readonly reader: number,
    readonly pick: number,
    readonly desc: boolean,
    readonly num: number,
    readonly begin: [number, bigint] | null,
    readonly end: [number, bigint] | null,
    readonly mtypes: number[] | null,
    readonly via: 'server' | 'client',
    readonly b: number,
  ) {}
  check(): boolean {
    return true;
  }
  private read(w: World, peer: bigint, o: { begin?: bigint; end?: bigint; lastid?: bigint }): Promise<Page> {
    const mtypes = this.mtypes ?? undefined;
    const me = w.uids[this.reader]!;
    if (this.via === 'client') {
      const c = w.clients[this.reader]!;
      const args = [this.desc, this.num, o.begin, o.end, o.lastid, mtypes] as const;
      if (this.kind === 'p2p') return c.getP2PMessage(peer, ...args);
      if (this.kind === 'group') return c.getGroupMessage(w.gid, ...args);
      if (this.kind === 'room') return c.getRoomMessage(w.rid, ...args);
      return c.getBroadcastMessage(...args);
    }
    const backend = w.backend(this.b);
    const opts = { ...o, mtypes };
    if (this.kind === 'p2p') return backend.getP2PMessage(me, peer, this.desc, this.num, opts);
    if (this.kind === 'group') return backend.getGroupMessage(me, w.gid, this.desc, this.num, opts);
    if (this.kind === 'room') return backend.getRoomMessage(me, w.rid, this.desc, this.num, opts);
    return backend.getBroadcastMessage(me, this.desc, this.num, opts);
  }
  async run(m: Model, w: World): Promise<void> {
    const peerIndex = (this.reader + 1 + (this.pick % (USERS - 1))) % USERS;
    const peer = w.uids[peerIndex]!;
    const me = w.uids[this.reader]!;
    const conversation = m.conversation({ kind: this.kind, reader: this.reader, peer: peerIndex }, w.gid, w.rid);
    const begin = m.time(this.begin, conversation);
    const end = m.time(this.end, conversation);
    if (begin !== undefined && end !== undefined && begin > end) {
      return refusedWith(this.read(w, peer, { begin, end }), 200034, 'begin after end');
    }
    const want = selected(conversation, begin, end, this.mtypes);
    if (this.desc) want.reverse();
    const size = Math.min(this.num, MAX_NUM);
    let cursor: { begin?: bigint; end?: bigint; lastid?: bigint } = { begin, end };
    let at = 0;
    let previousId: bigint | undefined;
    for (let n = 0; ; n++) {
      assert.ok(n <= Math.ceil(want.length / size), `more pages than ${want.length} messages fill`);
      const page = await this.read(w, peer, cursor);
      const what = `page ${n} of ${want.length} messages`;
      assert.deepEqual(
        page.messages.map(seen),
        want.slice(at, at + size).map((s) => expected(s, this.via)),
        what,
      );
      assert.equal(page.num, page.messages.length, `${what}: num`);
      page.messages.forEach((e, i) => {
        const s = want[at + i]!;
        if (s.id !== undefined) assert.equal(e.id, s.id, `${what}: the id of a message never changes`);
        s.id = e.id;
        if (previousId !== undefined) assert.ok(this.desc ? e.id < previousId : e.id > previousId, `${what}: ids in page order`);
        previousId = e.id;
        if (this.kind === 'p2p' && this.via === 'client') assert.equal(e.direction, e.fromUid === me ? 1 : 2, `${what}: direction`);
        if (this.kind === 'p2p' && this.via === 'server') assert.equal(e.toId, e.fromUid === me ? peer : me, `${what}: toId`);
      });
      // The cursor (proposal): lastid = the last entry's id (kept when empty); desc pages move end
      // to the last entry's mtime, asc pages move begin; the other bound is the request's.
      const last = page.messages.at(-1);
      assert.deepEqual(
        { lastid: page.lastid, begin: page.begin, end: page.end },
        {
          lastid: last?.id ?? cursor.lastid ?? 0n,
          begin: !this.desc && last ? last.mtime : (cursor.begin ?? 0n),
          end: this.desc && last ? last.mtime : (cursor.end ?? 0n),
        },
        `${what}: cursor`,
      );
      if (!last) break;
      at += page.messages.length;
      cursor = { lastid: page.lastid, begin: page.begin, end: page.end };
    }
    assert.equal(at, want.length, 'every message read');
  }
  toString(): string {
    const { kind, reader, pick, desc, num, begin, end, mtypes, via, b } = this;
    return `query(${kind}, reader ${reader}, pick ${pick}, ${desc ? 'desc' : 'asc'}, num ${num}, begin ${begin}, end ${end}, mtypes ${JSON.stringify(mtypes)}, ${via}${b})`;
  }
}

const user = fc.integer({ min: 0, max: USERS - 1 });
const pick = fc.nat({ max: 1000 });
const node = fc.integer({ min: 0, max: 1 });
const mtype = fc.constantFrom(...MTYPES);
const gate = fc.constantFrom('server' as const, 'client' as const);
const via: fc.Arbitrary<Via> = fc.oneof(
  node.map((b) => ({ gate: 'server' as const, b })),
  user.map((u) => ({ gate: 'client' as const, u })),
);
const time = fc.option(fc.tuple(pick, fc.constantFrom(-1n, 0n, 1n)));
const mtypes = fc.option(fc.subarray(MTYPES));
const sendKind = fc.constantFrom<Kind | 'multi'>('p2p', 'p2p', 'multi', 'group', 'room', 'broadcast');
const send = fc
  .tuple(sendKind, user, pick, fc.array(mtype, { minLength: 1, maxLength: 8 }), fc.boolean(), gate, node)
  .map(([kind, from, p, t, binary, g, b]) => new Send(kind, from, p, t, binary, g, b));
const commands = [
  send,
  send,
  send,
  send,
  fc.tuple(pick, fc.boolean(), gate, node).map(([p, changed, g, b]) => new Resend(p, changed, g, b)),
  fc.tuple(pick, via).map(([p, v]) => new Delete(p, v)),
  fc.tuple(pick, fc.boolean(), via).map(([p, peer, v]) => new GetOne(p, v, peer)),
  fc.tuple(fc.constantFrom('group' as const, 'room' as const), mtypes, time, time, node).map((a) => new Count(...a)),
  ...[0, 1].map(() =>
    fc
      .tuple(
        fc.constantFrom<Kind>('p2p', 'group', 'room', 'broadcast'),
        user,
        pick,
        fc.boolean(),
        fc.integer({ min: 1, max: MAX_NUM + 2 }),
        time,
        time,
        mtypes,
        gate,
        node,
      )
      .map((a) => new Query(...a)),
  ),
];

/** What the broadcast history holds before a run (the runs share one server): read from the server, checked by earlier runs. */
async function broadcastsSoFar(backend: RTMServerClient, reader: bigint): Promise<Sent[]> {
  const all: Sent[] = [];
  let lastid: bigint | undefined;
  for (;;) {
    const page = await backend.getBroadcastMessage(reader, false, MAX_NUM, { lastid });
    if (page.messages.length === 0) return all;
    for (const e of page.messages) {
      all.push({
        kind: 'broadcast',
        from: e.fromUid,
        to: 0n,
        mtype: e.mtype,
        mid: e.mid,
        body: e.message,
        attrs: e.attrs,
        mtime: e.mtime,
        deleted: false,
        id: e.id,
      });
    }
    lastid = page.lastid;
  }
}

function historyModel(name: string, deploy: () => Promise<Deployment & { close(): Promise<void> }>): void {
  describe(name, () => {
    let deployment: Deployment & { close(): Promise<void> };
    let nextId = 1n << 57n; // ids above 2^53

    before(async () => {
      deployment = await deploy();
    });
    after(async () => {
      await deployment?.close();
    });

    it('every page, cursor, message, count and refusal matches what was sent', { timeout: 180_000 }, async () => {
      await assertModel(
        fc.asyncProperty(modelCommands(commands, 50), async (cmds) => {
          const uids = Array.from({ length: USERS }, () => ++nextId);
          const world = new World(deployment, uids, ++nextId, ++nextId);
          try {
            await world.setUp();
            const model = new Model(uids);
            model.sent.push(...(await broadcastsSoFar(world.backend(0), uids[0]!)));
            await fc.asyncModelRun(() => ({ model, real: world }), cmds);
          } finally {
            world.close();
          }
        }),
      );
    });
  });
}

async function backends(endpoints: string[], pid: number, secret: string): Promise<RTMServerClient[]> {
  const all = endpoints.map((endpoint) => new RTMServerClient({ pid, secret, endpoint, autoReconnect: false }));
  await Promise.all(all.map((b) => b.connect()));
  return all;
}

historyModel('history, single messages and counts against a model: one node (SQLite)', async () => {
  const server: TestServer = await startTestServer({ limits: { historyMaxNum: MAX_NUM }, ...UNLIMITED });
  const all = await backends([server.serverEndpoint], TEST_PID, TEST_SECRET);
  return {
    backends: all,
    clientEndpoint: () => server.clientEndpoint,
    async close() {
      await Promise.all(all.map((b) => b.close()));
      await server.close();
    },
  };
});

const CI = process.env['CI'] === 'true';
const unavailable = await clusterServicesUnavailable();
if (unavailable && !CI) {
  describe('history against a model on two nodes (PostgreSQL + NATS)', () => {
    it('runs on a real cluster', { skip: unavailable }, () => {});
  });
} else {
  historyModel('history, single messages and counts against a model: two nodes (PostgreSQL + NATS)', async () => {
    if (unavailable) assert.fail(`${unavailable} (required when CI=true)`);
    const cluster: Cluster = await startCluster({
      nodes: 2,
      env: { RTM_HISTORY_MAX_NUM: String(MAX_NUM), RTM_CLIENT_CALLS_PER_SECOND: '0' },
    });
    const all = await backends([cluster.serverEndpoint(0), cluster.serverEndpoint(1)], cluster.pid, cluster.secret);
    return {
      backends: all,
      clientEndpoint: (u) => cluster.clientEndpoint(u % 2),
      async close() {
        await Promise.all(all.map((b) => b.close()));
        await cluster.close();
      },
    };
  });
}
