import { StrBytes, type Payload } from '@rtm/fpnn';
import { MessageKind, type StoredMessage } from '../store/store.js';

// ignoreBOM: a body's leading U+FEFF is kept when bin text is read as a string, as in the same
// text sent as str (the default decoder drops it).
const utf8 = new TextDecoder('utf-8', { ignoreBOM: true });
const strictUtf8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });
const CHAT_TEXT = 30;
/** Legacy audio: a JSON string (Android 2.7) or raw audio bytes as bin (C# / Unity 1.x / old Android `sendAudio(byte[])`). */
const LEGACY_AUDIO = 31;
const CHAT_CMD = 32;
/** File messages (server-api.md §7): `msg` is a JSON string. */
const FILE_MTYPES_FIRST = 40;
const FILE_MTYPES_LAST = 50;
const isFile = (mtype: number): boolean => mtype >= FILE_MTYPES_FIRST && mtype <= FILE_MTYPES_LAST;

/**
 * Chat text (30), legacy audio (31, JSON), commands (32) and files (40 – 50, a JSON string): clients
 * read their bodies as strings (client-api.md §7). Android keeps "" for a file body sent as bin.
 */
const isClientText = (mtype: number): boolean => (mtype >= CHAT_TEXT && mtype <= CHAT_CMD) || isFile(mtype);

/**
 * A message's body as clients read it in history, `getmsg` and conversation lists (client-api.md §7,
 * history column): the text types as strings even when sent as bin (Unity casts history `msg` to a
 * string), any other type exactly as sent. The server gate gets bodies as sent (server-api.md §3.1).
 */
export function clientStoredBody(m: StoredMessage): string | Uint8Array {
  // A StrBytes is a str already (its bytes are not UTF-8): sent back as the str it came as.
  if (typeof m.msg === 'string' || m.msg instanceof StrBytes || !isClientText(m.mtype)) return m.msg;
  if (m.mtype === LEGACY_AUDIO) {
    // Raw audio sent as bin must arrive byte for byte (the SDKs that send it keep a mtype-31 body
    // as bytes); only a body that is UTF-8 (the JSON form) reads as a string.
    try {
      return strictUtf8.decode(m.msg);
    } catch {
      return m.msg;
    }
  }
  return utf8.decode(m.msg);
}

/** Client pushes of chat text carry `msg` as a map, the other text types a string (client-api.md §7). */
function clientBody(m: StoredMessage): unknown {
  if (m.mtype !== CHAT_TEXT) return clientStoredBody(m);
  return { source: '', target: '', sourceText: clientStoredBody(m), targetText: '' };
}

/** The push a client session receives for a stored message (client-api.md §6). */
export function clientPush(m: StoredMessage): { method: string; payload: Payload } {
  const base = { from: m.from, mtype: m.mtype, mid: m.mid, msg: clientBody(m), attrs: m.attrs, mtime: m.mtime };
  switch (m.kind) {
    case MessageKind.P2P:
      return {
        method: 'pushmsg',
        payload: { from: m.from, to: m.to, mtype: m.mtype, mid: m.mid, msg: base.msg, attrs: m.attrs, mtime: m.mtime },
      };
    case MessageKind.GROUP:
      return {
        method: 'pushgroupmsg',
        payload: { from: m.from, gid: m.to, mtype: m.mtype, mid: m.mid, msg: base.msg, attrs: m.attrs, mtime: m.mtime },
      };
    case MessageKind.ROOM:
      return {
        method: 'pushroommsg',
        payload: { from: m.from, rid: m.to, mtype: m.mtype, mid: m.mid, msg: base.msg, attrs: m.attrs, mtime: m.mtime },
      };
    default:
      return { method: 'pushbroadcastmsg', payload: base };
  }
}

/**
 * `msg` in a push to a listening backend (server-api.md §6): a string for chat (30), cmd (32) and
 * files (40 – 50) even when sent as bin (the C# server SDK reads these with `Want<string>("msg")`,
 * which throws on bin); any other type exactly as sent (bin = a binary message, legacy audio 31
 * included).
 */
function serverPushBody(m: StoredMessage): string | Uint8Array {
  if (typeof m.msg === 'string' || m.msg instanceof StrBytes) return m.msg;
  const text = m.mtype === CHAT_TEXT || m.mtype === CHAT_CMD || isFile(m.mtype);
  return text ? utf8.decode(m.msg) : m.msg;
}

/** The push a listening backend receives (server-api.md §6): chat as a plain body, never a map. */
export function serverPush(m: StoredMessage): { method: string; payload: Payload } | undefined {
  const common = { mtype: m.mtype, mid: m.mid, msg: serverPushBody(m), attrs: m.attrs, mtime: m.mtime };
  switch (m.kind) {
    case MessageKind.P2P:
      return { method: 'pushmsg', payload: { from: m.from, to: m.to, ...common } };
    case MessageKind.GROUP:
      return { method: 'pushgroupmsg', payload: { from: m.from, gid: m.to, ...common } };
    case MessageKind.ROOM:
      return { method: 'pushroommsg', payload: { from: m.from, rid: m.to, ...common } };
    default:
      return undefined;
  }
}

/** Who reads a history entry or a message: a client gets text bodies as strings (`clientStoredBody`). */
export type Audience = 'client' | 'server';

/** A history entry: exactly 8 items (server-api.md §3.1); p2p index 1 is the direction for `reader`. */
export function historyEntry(m: StoredMessage, audience: Audience, reader?: bigint): unknown[] {
  const second = m.kind === MessageKind.P2P && reader !== undefined ? (m.from === reader ? 1 : 2) : m.from;
  return [m.id, second, m.mtype, m.mid, false, audience === 'client' ? clientStoredBody(m) : m.msg, m.attrs, m.mtime];
}
