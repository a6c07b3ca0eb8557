import type { Payload } from '@rtm/fpnn';
import {
  MessageKind,
  type ConversationRef,
  type Store,
  type StoredMessage,
  type UnreadBaseline,
  type UnreadCount,
} from '../store/store.js';
import { FILTERED_PAGE_SCAN_ROWS } from './history.js';
import { historyEntry } from './pushes.js';

/**
 * Unread counting and conversation lists (client-api.md §3.3), shared by the client methods of
 * `methods/client/unread.ts` and `methods/client/conversations.ts`.
 *
 * Baseline (project decision, client-api.md §3.3 "Unread baseline"): a message is unread when its
 * mtime is after the later of the user's last logout and last clear. The logout time is written by
 * `services/sessions.ts` only when the user's *last* session on any device ends for good (after the
 * reconnect grace period, or at once on `bye`), so a blip or a second device does not move it.
 * Consequence: messages that arrive while the user is online stay unread until a clear or until the
 * user's presence ends (the next baseline is that logout) — the server does not know what the app
 * displayed, and a clear is how the app says "seen".
 *
 * A clear sets the clear time to the store's unread mark (store/message-clock.ts); counting is
 * `mtime > baseline`, so after a clear every count is 0, and every message stored after the clear
 * counts, even in the same millisecond.
 */

/** Default mtypes of unread counts and conversation lists: chat, audio/cmd and file types (client-api.md §3.3, proposal 30–50). */
export const DEFAULT_UNREAD_MTYPES: readonly number[] = Object.freeze(Array.from({ length: 21 }, (_, i) => 30 + i));

/** The optional keys of getp2punread / getgroupunread / the conversation lists. */
export interface UnreadOptions {
  /** ms; > 0 overrides the baseline. */
  mtime?: bigint;
  /** Types to count; absent or empty = DEFAULT_UNREAD_MTYPES. */
  mtypes?: readonly number[];
}

/** The later of the last logout and the last clear, 0n when neither happened. */
export function baselineOf(b: UnreadBaseline): bigint {
  const logout = b.logoutTime ?? 0n;
  const clear = b.clearTime ?? 0n;
  return logout > clear ? logout : clear;
}

/** A conversation's row in a conversation list: id, unread count, last message entry. */
export interface ConversationRow {
  id: bigint;
  unread: number;
  last: StoredMessage;
}

export class UnreadService {
  /**
   * `maxConversations`: a conversation list holds at most the newest this many (Limits.maxQueryItems).
   * Each row reads its conversation's last message on the event loop (~0.1 ms with SQLite): a
   * backend's account that wrote to 100,000 users took seconds of the whole server per list, and
   * its answer outgrew any outbound bound.
   */
  constructor(
    private readonly store: Store,
    private readonly maxConversations = Infinity,
  ) {}

  /** The ms after which messages count as unread: an explicit `mtime` > 0, else the user's baseline. */
  async since(pid: number, uid: bigint, mtime?: bigint): Promise<bigint> {
    if (mtime !== undefined && mtime > 0n) return mtime;
    return baselineOf(await this.store.getUnreadBaseline(pid, uid));
  }

  /** Marks everything stored up to `mark` (the store's unreadMark, taken now by default) as read. */
  async clear(pid: number, uid: bigint, mark = this.store.unreadMark()): Promise<void> {
    await this.store.setClearTime(pid, uid, mark);
  }

  /**
   * `getunread`: peers and groups with messages for `uid` after the baseline. Counts messages of
   * every mtype (the method has no `mtypes` key and answers "is there anything new at all"; the
   * typed counts are getp2punread / getgroupunread).
   */
  async overview(pid: number, uid: bigint): Promise<{ p2p: bigint[]; group: bigint[]; logoutTime: bigint }> {
    const baseline = await this.store.getUnreadBaseline(pid, uid);
    const since = baselineOf(baseline);
    const [p2p, gids] = await Promise.all([this.store.unreadP2P({ pid, uid, since }), this.store.userGroups(pid, uid)]);
    const groups = await this.store.unreadGroups({ pid, uid, since, gids });
    return { p2p: [...p2p.keys()], group: [...groups.keys()], logoutTime: baseline.logoutTime ?? 0n };
  }

  /** Unread p2p messages from each of `peers` to `uid` (peers without any are absent). */
  async p2pCounts(pid: number, uid: bigint, peers: readonly bigint[], opts: UnreadOptions): Promise<Map<bigint, UnreadCount>> {
    if (peers.length === 0) return new Map();
    const since = await this.since(pid, uid, opts.mtime);
    return this.store.unreadP2P({ pid, uid, since, mtypes: mtypesOf(opts), peers });
  }

  /** Unread group messages (from others) in those of `gids` that `uid` is a member of. */
  async groupCounts(pid: number, uid: bigint, gids: readonly bigint[], opts: UnreadOptions): Promise<Map<bigint, UnreadCount>> {
    if (gids.length === 0) return new Map();
    const mine = new Set(await this.store.userGroups(pid, uid));
    const asked = [...new Set(gids)].filter((gid) => mine.has(gid));
    if (asked.length === 0) return new Map();
    const since = await this.since(pid, uid, opts.mtime);
    return this.store.unreadGroups({ pid, uid, since, mtypes: mtypesOf(opts), gids: asked });
  }

  /** My p2p conversations with unread counts and last messages of the counted types, newest of those first. */
  async p2pConversations(pid: number, uid: bigint, opts: UnreadOptions, unreadOnly: boolean): Promise<ConversationRow[]> {
    const peers = await this.store.p2pPeers(pid, uid);
    const counts = await this.p2pCounts(pid, uid, peers, opts);
    const ids = (unreadOnly ? peers.filter((p) => counts.has(p)) : peers).slice(0, this.maxConversations);
    // The store orders by a pair's newest message of any type, deleted ones too: the list goes by
    // the message it shows, as the group list does.
    return newestFirst(await this.rows(ids, counts, opts, (peer) => ({ pid, kind: MessageKind.P2P, uid, peer })));
  }

  /** My groups that have a last message of the counted types, with unread counts. */
  async groupConversations(pid: number, uid: bigint, opts: UnreadOptions, unreadOnly: boolean): Promise<ConversationRow[]> {
    const gids = await this.store.userGroups(pid, uid);
    const counts = await this.groupCounts(pid, uid, gids, opts);
    const ids = unreadOnly ? gids.filter((g) => counts.has(g)) : gids;
    // The store does not order groups by activity: every one's row is read (a user is in at most
    // as many groups as a project holds), and the newest kept.
    return newestFirst(await this.rows(ids, counts, opts, (to) => ({ pid, kind: MessageKind.GROUP, to }))).slice(0, this.maxConversations);
  }

  /** `getsession`: p2p peers (store order) and my groups that have at least one message of any type. */
  async sessions(pid: number, uid: bigint): Promise<{ p2p: bigint[]; group: bigint[] }> {
    const [p2p, gids] = await Promise.all([this.store.p2pPeers(pid, uid), this.store.userGroups(pid, uid)]);
    const last = await Promise.all(gids.map((to) => this.lastMessage({ pid, kind: MessageKind.GROUP, to })));
    return { p2p, group: gids.filter((_, i) => last[i] !== undefined) };
  }

  private async rows(
    ids: readonly bigint[],
    counts: Map<bigint, UnreadCount>,
    opts: UnreadOptions,
    conv: (id: bigint) => ConversationRef,
  ): Promise<ConversationRow[]> {
    const mtypes = mtypesOf(opts);
    const last = await Promise.all(ids.map((id) => this.lastMessage(conv(id), mtypes)));
    const rows: ConversationRow[] = [];
    ids.forEach((id, i) => {
      const m = last[i];
      // client-api.md §3.3 proposal: omit conversations without a last message
      if (m) rows.push({ id, unread: counts.get(id)?.count ?? 0, last: m });
    });
    return rows;
  }

  private async lastMessage(conversation: ConversationRef, mtypes?: readonly number[]): Promise<StoredMessage | undefined> {
    // A conversation whose newest FILTERED_PAGE_SCAN_ROWS messages hold none of these types shows
    // none: finding an older one would read the whole conversation, for every list.
    const [m] = (await this.store.historyWithin({ conversation, desc: true, num: 1, mtypes }, FILTERED_PAGE_SCAN_ROWS)).messages;
    return m;
  }
}

/** Conversation rows by the message each shows, newest first. */
function newestFirst(rows: ConversationRow[]): ConversationRow[] {
  return rows.sort((a, b) => (a.last.id < b.last.id ? 1 : a.last.id > b.last.id ? -1 : 0));
}

function mtypesOf(opts: UnreadOptions): readonly number[] {
  return opts.mtypes && opts.mtypes.length > 0 ? opts.mtypes : DEFAULT_UNREAD_MTYPES;
}

/** `{conversations, unreads, msgs}` for a client: parallel arrays; p2p entries carry the direction for `reader`. */
export function conversationListAnswer(rows: readonly ConversationRow[], reader: bigint): Payload {
  return {
    conversations: rows.map((r) => r.id),
    unreads: rows.map((r) => r.unread),
    msgs: rows.map((r) => historyEntry(r.last, 'client', reader)),
  };
}

/** Per-id maps keyed by decimal strings: `{<key>: {"<id>": count}, ltime: {"<id>": ms}}`. */
export function unreadMapsAnswer(key: 'p2p' | 'group', counts: ReadonlyMap<bigint, UnreadCount>): Payload {
  const n: Record<string, number> = {};
  const ltime: Record<string, bigint> = {};
  for (const [id, c] of counts) {
    n[id.toString()] = c.count;
    ltime[id.toString()] = c.ltime;
  }
  return { [key]: n, ltime };
}
