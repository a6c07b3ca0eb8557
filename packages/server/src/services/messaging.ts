import { RtmError, RtmErrorCode } from '@rtm/fpnn';
import type { Bus } from '../bus/bus.js';
import type { ServerConfig } from '../config.js';
import { sendReceivedChannel, sendStoredChannel, type SendStoredEvent } from '../observability/channels.js';
import type { Metrics } from '../observability/metrics.js';
import { MessageKind, type AppendResult, type MaybePromise, type NewMessage, type Store } from '../store/store.js';
import type { GroupMembers } from './group-members.js';
import type { LocalPresence } from './presence.js';
import { checkStoredText } from './text.js';
import { sameContent } from '../store/conversation.js';

export interface SendRequest {
  pid: number;
  kind: MessageKind;
  from: bigint;
  /** Receiver uid (p2p), gid, rid; ignored for broadcast. */
  to?: bigint;
  /** Several receivers (sendmsgs). */
  tos?: readonly bigint[];
  mid: bigint;
  mtype: number;
  msg: string | Uint8Array;
  attrs: string;
  /** Which gate the send came through: the client gate always checks membership. */
  gate: 'server' | 'client';
  /**
   * The connection the send came on: a client session never gets its own message back; a
   * listening backend gets it after the answer (server-api.md §2.1: persist, answer, then push).
   */
  originConn?: number;
}

const KIND_LABEL = { 1: 'p2p', 2: 'group', 3: 'room', 4: 'broadcast' } as const;
const byteLength = (v: string | Uint8Array): number => (typeof v === 'string' ? Buffer.byteLength(v) : v.length);

/**
 * The send path (DESIGN.md "Delivery path of one message"): validate → check rights →
 * persist (group commit) → answer mtime → publish for delivery on every node.
 */
export class Messaging {
  constructor(
    private readonly config: ServerConfig,
    private readonly store: Store,
    private readonly bus: Bus,
    private readonly presence: LocalPresence,
    private readonly metrics: Metrics,
    private readonly groups: GroupMembers,
  ) {}

  /**
   * Sends a message; resolves with its mtime (the original one for an idempotent resend).
   *
   * Not an async function: every client send runs it. The common case (one P2P receiver on a store
   * that answers its checks at once, as the embedded one does) takes one promise, the append's;
   * every other case goes through `sendChecked`.
   */
  send(req: SendRequest): Promise<bigint> {
    if (sendReceivedChannel.hasSubscribers) sendReceivedChannel.publish(req);
    try {
      const now = BigInt(Date.now());
      this.checkSizes(req);
      const black = this.store.isProjectBlack(req.pid, req.from, now);
      if (typeof black !== 'boolean' || !toOneUser(req)) return this.sendChecked(req, now, black);
      if (black) throw projectBlack(req);
      if (req.gate === 'client' && req.to === req.from) throw sendToSelf();
      const blockers = this.store.blockedBy(req.pid, req.from, [req.to]);
      if (blockers instanceof Promise) return this.sendChecked(req, now, false, blockers);
      if (blockers.length > 0) throw blocked(req);
      return this.store.append(batchOf(req, [req.to])).then((results) => this.published(req, results, undefined));
    } catch (err) {
      return this.unlessStoredBefore(req, err);
    }
  }

  /** `send` once a check's answer is a promise, or for the other kinds of send. */
  private async sendChecked(req: SendRequest, now: bigint, black: MaybePromise<boolean>, blockers?: Promise<bigint[]>): Promise<bigint> {
    let to: Targets;
    try {
      if (await black) throw projectBlack(req);
      if (toOneUser(req)) {
        // No sets, no filtering.
        if (req.gate === 'client' && req.to === req.from) throw sendToSelf();
        if ((await (blockers ?? this.store.blockedBy(req.pid, req.from, [req.to]))).length > 0) throw blocked(req);
        to = { targets: [req.to], recipients: undefined };
      } else {
        to = await this.targetsOf(req, now);
      }
    } catch (err) {
      return this.unlessStoredBefore(req, err);
    }
    return this.published(req, await this.store.append(batchOf(req, to.targets)), to.recipients);
  }

  /**
   * A send refused by a rights check may be the resend of one stored before the rights changed:
   * its answer was lost, and meanwhile the sender left the room or group, was banned or blocked.
   * A resend is answered with the original mtime (server-api.md §2.1, so that SDK retries
   * succeed), here too, once every target holds the same message; otherwise the refusal stands.
   * Only on the error path: a send that passes its checks finds its duplicate in the append.
   */
  private async unlessStoredBefore(req: SendRequest, refusal: unknown): Promise<bigint> {
    if (!(refusal instanceof RtmError) || !RIGHTS_REFUSALS.has(refusal.code)) throw refusal;
    const targets = req.kind === MessageKind.BROADCAST ? [0n] : req.tos ? [...new Set(req.tos)] : req.to !== undefined ? [req.to] : [];
    let mtime: bigint | undefined;
    for (const to of targets) {
      const stored = await this.store.getMessage({ pid: req.pid, kind: req.kind, from: req.from, to, mid: req.mid });
      if (!stored || !sameContent(stored, req)) throw refusal;
      mtime ??= stored.mtime;
    }
    if (mtime === undefined) throw refusal;
    return mtime;
  }

  private checkSizes(req: SendRequest): void {
    const { limits } = this.config;
    if (!Number.isInteger(req.mtype) || req.mtype < 1 || req.mtype > 127) {
      throw new RtmError(RtmErrorCode.INVALID_MTYPE, `mtype must be between 1 and 127, got ${req.mtype}`);
    }
    const msgBytes = byteLength(req.msg);
    if (msgBytes > limits.maxMsgBytes)
      throw new RtmError(RtmErrorCode.LARGE_MESSAGE_OR_ATTRS, `msg is ${msgBytes} bytes, the limit is ${limits.maxMsgBytes}`);
    const attrsBytes = byteLength(req.attrs);
    if (attrsBytes > limits.maxAttrsBytes)
      throw new RtmError(RtmErrorCode.LARGE_MESSAGE_OR_ATTRS, `attrs is ${attrsBytes} bytes, the limit is ${limits.maxAttrsBytes}`);
    checkStoredText('attrs', req.attrs);
  }

  /** Whom a multi-user, group, room or broadcast send goes to, after its rights are checked. */
  private async targetsOf(req: SendRequest, now: bigint): Promise<Targets> {
    const { limits } = this.config;
    switch (req.kind) {
      case MessageKind.P2P: {
        const tos = req.tos ?? [];
        if (req.tos) {
          if (tos.length === 0) throw new RtmError(RtmErrorCode.EMPTY_PARAMETER, 'tos must not be empty');
          if (tos.length > limits.maxRecipients)
            throw new RtmError(
              RtmErrorCode.TOO_MANY_ITEMS_IN_PARAMETERS,
              `tos has ${tos.length} uids, the limit is ${limits.maxRecipients}`,
            );
        }
        const unique = [...new Set(tos)];
        if (req.gate === 'client' && unique.includes(req.from)) throw sendToSelf();
        const blockers = new Set(await this.store.blockedBy(req.pid, req.from, unique));
        if (!req.tos && blockers.size > 0) throw blocked(req);
        // Multi-user sends skip receivers that blocked the sender (they must not get it).
        const targets = unique.filter((uid) => !blockers.has(uid));
        if (targets.length === 0) throw new RtmError(RtmErrorCode.BLOCKED_USER, `every receiver has blocked user ${req.from}`);
        return { targets, recipients: undefined };
      }
      case MessageKind.GROUP: {
        const gid = req.to!;
        const recipients = await this.groups.members(req.pid, gid);
        // A group without members is unknown: the backend is told so even when it may send as a non-member.
        if (recipients.length === 0 && req.gate === 'server') throw new RtmError(RtmErrorCode.EMPTY_GROUP, `group ${gid} has no members`);
        const checkMember = req.gate === 'client' || this.config.serverSendRequiresMembership;
        if (checkMember && !recipients.includes(req.from))
          throw new RtmError(RtmErrorCode.NOT_GROUP_MEMBER, `user ${req.from} is not a member of group ${gid}`);
        if (await this.store.isBanned(req.pid, 'group', gid, req.from, now))
          throw new RtmError(RtmErrorCode.BANNED_IN_GROUP, `user ${req.from} is banned in group ${gid}`);
        return { targets: [gid], recipients };
      }
      case MessageKind.ROOM: {
        const rid = req.to!;
        const checkMember = req.gate === 'client' || this.config.serverSendRequiresMembership;
        if (checkMember) {
          const inRoom =
            req.gate === 'client'
              ? this.presence.isInRoomLocally(req.pid, rid, req.from) || (await this.store.userRooms(req.pid, req.from)).includes(rid)
              : (await this.store.userRooms(req.pid, req.from)).includes(rid);
          if (!inRoom) throw new RtmError(RtmErrorCode.NOT_IN_ROOM, `user ${req.from} is not in room ${rid}`);
        }
        if (await this.store.isBanned(req.pid, 'room', rid, req.from, now))
          throw new RtmError(RtmErrorCode.BANNED_IN_ROOM, `user ${req.from} is banned in room ${rid}`);
        return { targets: [rid], recipients: undefined };
      }
      default: {
        const admins = this.config.broadcastAdminUids;
        if (req.gate === 'server' && admins.length > 0 && !admins.includes(req.from)) {
          throw new RtmError(RtmErrorCode.ADMIN_ONLY, `user ${req.from} may not broadcast`);
        }
        return { targets: [0n], recipients: undefined };
      }
    }
  }

  /** Publishes what was stored for delivery on every node; returns the mtime to answer. */
  private published(req: SendRequest, results: readonly AppendResult[], groupMembers: readonly bigint[] | undefined): bigint {
    // Never drop silently: the caller learns that this mid already names another message, and
    // nothing of the send was stored (a batch is all or nothing), so a retry with a new mid
    // reaches every receiver once.
    for (const r of results) {
      if (r.status === 'collision' || r.status === 'withheld') {
        throw new RtmError(
          RtmErrorCode.DUPLCATED_MID,
          `mid ${req.mid} was already used by user ${req.from} for another message to the same target`,
        );
      }
    }
    let mtime: bigint | undefined;
    const origin = req.originConn !== undefined ? { node: this.bus.nodeId, conn: req.originConn } : undefined;
    for (const r of results) {
      if (!('message' in r)) continue; // none left after the check above
      mtime ??= r.message.mtime;
      if (r.status === 'duplicate') continue; // an idempotent resend: nothing stored, nothing delivered
      this.metrics.messages.tally(KIND_LABEL[req.kind]).n++;
      if (sendStoredChannel.hasSubscribers) sendStoredChannel.publish({ request: req, message: r.message } satisfies SendStoredEvent);
      this.bus.publish({
        type: 'message',
        message: r.message,
        recipients: req.kind === MessageKind.GROUP ? groupMembers : req.kind === MessageKind.P2P ? [r.message.to] : undefined,
        origin,
      });
    }
    return mtime!;
  }
}

/** Who gets a send: the stored targets (uid, gid, rid or 0), and a group's members for delivery. */
interface Targets {
  targets: bigint[];
  recipients: readonly bigint[] | undefined;
}

/** Refusals that depend on the sender's rights of the moment, not on the message (`unlessStoredBefore`). */
const RIGHTS_REFUSALS: ReadonlySet<number> = new Set([
  RtmErrorCode.AUTH_DENIED,
  RtmErrorCode.ADMIN_ONLY,
  RtmErrorCode.NOT_IN_ROOM,
  RtmErrorCode.NOT_GROUP_MEMBER,
  RtmErrorCode.BANNED_IN_GROUP,
  RtmErrorCode.BANNED_IN_ROOM,
  RtmErrorCode.EMPTY_GROUP,
  RtmErrorCode.BLOCKED_USER,
]);

/** A P2P send to one receiver (sendmsg, the common case), as opposed to sendmsgs' `tos`. */
const toOneUser = (req: SendRequest): req is SendRequest & { to: bigint } =>
  req.kind === MessageKind.P2P && !req.tos && req.to !== undefined;

const projectBlack = (req: SendRequest): RtmError => new RtmError(RtmErrorCode.AUTH_DENIED, `user ${req.from} is on the project blacklist`);
const sendToSelf = (): RtmError => new RtmError(RtmErrorCode.SEND_TO_SELF, 'cannot send a message to oneself');
const blocked = (req: SendRequest): RtmError => new RtmError(RtmErrorCode.BLOCKED_USER, `user ${req.to} has blocked user ${req.from}`);

function batchOf(req: SendRequest, targets: readonly bigint[]): NewMessage[] {
  return targets.map((to) => ({
    pid: req.pid,
    kind: req.kind,
    from: req.from,
    to,
    mid: req.mid,
    mtype: req.mtype,
    msg: req.msg,
    attrs: req.attrs,
  }));
}
