import type { RtmError } from '@rtm/fpnn';
import type { Id } from './wire.js';

/** `type` of `getmsg` / `delmsg` / `getmsgnum` (server-api.md §3.2). */
export const MessageType = { P2P: 1, GROUP: 2, ROOM: 3, BROADCAST: 4 } as const;
export type MessageType = (typeof MessageType)[keyof typeof MessageType];

/** A message body: text travels as msgpack str, binary as bin; both come back as sent. */
export type MessageBody = string | Uint8Array;

/** Per-call option: how long to wait for the answer (and for a reconnection), in milliseconds. */
export interface CallOptions {
  /** @default the client's `questTimeoutMs` */
  timeoutMs?: number;
}

export interface SendOptions extends CallOptions {
  /** Message id; absent or 0 = generate a new one (unique per client). Reuse it to resend. */
  mid?: Id;
}

export interface SendResult {
  /** The mid sent (the one given or the generated one). */
  mid: bigint;
  /** Server time of the message, ms. */
  mtime: bigint;
}

/**
 * How a send rejects: an `RtmError` that carries the mid it sent (given or generated). A send whose
 * answer was lost (20002, 20003) may have been stored: resend it with this mid and the server
 * stores and pushes it once (server-api.md §2.1).
 */
export type SendError = RtmError & { readonly mid: bigint };

export interface HistoryOptions extends CallOptions {
  /** Only messages with mtime ≥ begin (ms). Pass the previous page's `begin` to continue. */
  begin?: Id;
  /** Only messages with mtime ≤ end (ms). Pass the previous page's `end` to continue. */
  end?: Id;
  /** Cursor: the previous page's `lastid`. Absent = first page. */
  lastid?: Id;
  /** Only these mtypes. */
  mtypes?: readonly number[];
}

/** One history entry (server-api.md §3.1 row), with the sender resolved. */
export interface HistoryMessage {
  /** Cursor id, increasing within the conversation. */
  id: bigint;
  fromUid: bigint;
  /** Receiver uid (p2p), gid, rid, or 0n for broadcast. */
  toId: bigint;
  mtype: number;
  mid: bigint;
  deleted: boolean;
  message: MessageBody;
  attrs: string;
  /** ms */
  mtime: bigint;
}

/** One page of history; pass `lastid`, `begin`, `end` back in `HistoryOptions` for the next page. */
export interface HistoryPage {
  /** Number of entries in `messages`. */
  num: number;
  lastid: bigint;
  begin: bigint;
  end: bigint;
  messages: HistoryMessage[];
}

/** `getmsg` answer. */
export interface RetrievedMessage {
  id: bigint;
  mtype: number;
  message: MessageBody;
  attrs: string;
  /** ms */
  mtime: bigint;
}

export interface MessageNum {
  /** Number of distinct senders. */
  sender: number;
  /** Number of messages. */
  num: number;
}

export interface InfoPair {
  /** Public info. */
  oinfo: string;
  /** Private info. */
  pinfo: string;
}

/** Lists of `addlisten` / `removelisten` / `setlisten` (list form). */
export interface ListenLists {
  gids?: readonly Id[];
  rids?: readonly Id[];
  uids?: readonly Id[];
  /** Event names: 'login', 'logout'. */
  events?: readonly string[];
}

/** `setlisten` "all" form: listen to every p2p / group / room message, every event. Absent = false. */
export interface ListenAll {
  p2p?: boolean;
  group?: boolean;
  room?: boolean;
  /** All events (wire key `ev`). */
  events?: boolean;
}

type Never<T> = { [K in keyof T]?: never };
/** Either form of `setListen`, not both in one call. */
export type SetListenOptions = (ListenLists & Never<Omit<ListenAll, 'events'>>) | (ListenAll & Never<Omit<ListenLists, 'events'>>);

// ---- pushes (server-api.md §6) ----

export interface PushP2PMessage {
  fromUid: bigint;
  toUid: bigint;
  mtype: number;
  mid: bigint;
  message: MessageBody;
  attrs: string;
  /** ms */
  mtime: bigint;
}

export interface PushGroupMessage {
  fromUid: bigint;
  gid: bigint;
  mtype: number;
  mid: bigint;
  message: MessageBody;
  attrs: string;
  mtime: bigint;
}

export interface PushRoomMessage {
  fromUid: bigint;
  rid: bigint;
  mtype: number;
  mid: bigint;
  message: MessageBody;
  attrs: string;
  mtime: bigint;
}

export interface PushEvent {
  pid: number;
  /** 'login' or 'logout'. */
  event: string;
  uid: bigint;
  /** Seconds. */
  time: number;
  /** Client gate that saw the event, 'host:port'. */
  endpoint: string;
  data?: string;
}

export interface ConnectedInfo {
  endpoint: string;
  /** false for the connection opened by `connect()`, true for automatic reconnections. */
  reconnected: boolean;
}

export interface ClosedInfo {
  reason: string;
  /** true when the client is going to reconnect on its own. */
  willReconnect: boolean;
}

/** Events of `RTMServerClient` and their payloads. */
export interface ServerClientEvents {
  connected: ConnectedInfo;
  closed: ClosedInfo;
  /** Errors no call can report: failed reconnect attempts, a failed listen restore, malformed pushes. */
  error: Error;
  /** A server `ping`; `at` is the local receive time in ms. */
  ping: { at: number };
  message: PushP2PMessage;
  groupMessage: PushGroupMessage;
  roomMessage: PushRoomMessage;
  event: PushEvent;
}

export type ServerClientEventName = keyof ServerClientEvents;

/** Connection state of the client. */
export type ConnectionState = 'idle' | 'connecting' | 'connected' | 'reconnecting' | 'disconnected' | 'closed';
