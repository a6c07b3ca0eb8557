import type { Payload } from '@rtm/fpnn';
import { readBody, readId, readInt, readString } from './convert.js';
import type { BroadcastMessage, GroupMessage, P2PMessage, PushedMessage, RoomMessage } from './types.js';

/**
 * Remembers push keys for `ttlMs` to drop duplicates (client-api.md §6.1: the browser SDK keys on
 * `<kind>_<mid>_<from>[_<gid|rid>]` for 5 s; p2p keys here add the receiver, see `pushmsg`).
 * Expired keys are swept lazily on insert, so the filter owns no timer.
 */
export class DuplicateFilter {
  private readonly expiry = new Map<string, number>();
  private nextSweep = 0;

  constructor(private readonly ttlMs: number) {}

  /** true when `key` was seen within the TTL; otherwise records it and returns false. */
  isDuplicate(key: string, now = Date.now()): boolean {
    if (this.ttlMs <= 0) return false;
    if (now >= this.nextSweep) {
      for (const [k, until] of this.expiry) if (until <= now) this.expiry.delete(k);
      this.nextSweep = now + this.ttlMs + 1000;
    }
    const until = this.expiry.get(key);
    if (until !== undefined && until > now) return true;
    this.expiry.set(key, now + this.ttlMs);
    return false;
  }

  get size(): number {
    return this.expiry.size;
  }

  clear(): void {
    this.expiry.clear();
  }
}

/** The kind number in the duplicate key (client-api.md §6.1). */
const Kind = { P2P: 1, GROUP: 2, ROOM: 3, BROADCAST: 4 } as const;

function base(payload: Payload): PushedMessage {
  const body = readBody(payload.msg);
  const message: PushedMessage = {
    fromUid: readId(payload.from),
    mtype: readInt(payload.mtype),
    mid: readId(payload.mid),
    message: body.message,
    attrs: readString(payload.attrs),
    mtime: readId(payload.mtime),
  };
  if (body.translatedInfo) message.translatedInfo = body.translatedInfo;
  return message;
}

/** A message push method, the event it becomes, and its duplicate key. */
export interface MessagePushRoute<E extends PushEventName = PushEventName> {
  readonly event: E;
  read(payload: Payload): PushEventPayload[E];
  key(message: PushEventPayload[E]): string;
}

export interface PushEventPayload {
  message: P2PMessage;
  groupMessage: GroupMessage;
  roomMessage: RoomMessage;
  broadcastMessage: BroadcastMessage;
}
export type PushEventName = keyof PushEventPayload;

/** The four message pushes of client-api.md §6, one route each. */
export const messagePushRoutes: { readonly [method: string]: MessagePushRoute } = {
  pushmsg: {
    event: 'message',
    read: (p): P2PMessage => ({ ...base(p), toUid: readId(p.to) }),
    // With the receiver: a sender's other devices (RTM_PUSH_TO_SENDER_DEVICES) get its messages to
    // every peer, and one mid to two peers is two messages (the server's key is (from, to, mid)).
    key: (m) => `${Kind.P2P}_${m.mid}_${m.fromUid}_${m.toUid}`,
  } satisfies MessagePushRoute<'message'>,
  pushgroupmsg: {
    event: 'groupMessage',
    read: (p): GroupMessage => ({ ...base(p), gid: readId(p.gid) }),
    key: (m) => `${Kind.GROUP}_${m.mid}_${m.fromUid}_${m.gid}`,
  } satisfies MessagePushRoute<'groupMessage'>,
  pushroommsg: {
    event: 'roomMessage',
    read: (p): RoomMessage => ({ ...base(p), rid: readId(p.rid) }),
    key: (m) => `${Kind.ROOM}_${m.mid}_${m.fromUid}_${m.rid}`,
  } satisfies MessagePushRoute<'roomMessage'>,
  pushbroadcastmsg: {
    event: 'broadcastMessage',
    read: (p): BroadcastMessage => base(p),
    key: (m) => `${Kind.BROADCAST}_${m.mid}_${m.fromUid}`,
  } satisfies MessagePushRoute<'broadcastMessage'>,
} as { readonly [method: string]: MessagePushRoute };

/**
 * The browser SDK's `excludedUids` convention (client-api.md §6.2): a push whose attrs are JSON
 * with an array `excludedUids` containing my uid as a string is dropped.
 */
export function excludesUid(attrs: string, uid: bigint): boolean {
  if (!attrs.includes('excludedUids')) return false;
  try {
    const parsed = JSON.parse(attrs) as { excludedUids?: unknown };
    return Array.isArray(parsed?.excludedUids) && parsed.excludedUids.includes(uid.toString());
  } catch {
    return false;
  }
}
