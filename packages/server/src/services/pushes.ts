import type { Payload } from '@rtm/fpnn';
import { MessageKind, type StoredMessage } from '../store/store.js';

const utf8 = new TextDecoder();
const CHAT_TEXT = 30;

/** Client pushes of chat text carry `msg` as a map (client-api.md §7). */
function clientBody(m: StoredMessage): unknown {
  if (m.mtype !== CHAT_TEXT) return m.msg;
  const text = typeof m.msg === 'string' ? m.msg : utf8.decode(m.msg);
  return { source: '', target: '', sourceText: text, targetText: '' };
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

/** The push a listening backend receives (server-api.md §6): `msg` exactly as sent, chat included. */
export function serverPush(m: StoredMessage): { method: string; payload: Payload } | undefined {
  const common = { mtype: m.mtype, mid: m.mid, msg: m.msg, attrs: m.attrs, mtime: m.mtime };
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

/** A history entry: exactly 8 items (server-api.md §3.1); p2p index 1 is the direction for `reader`. */
export function historyEntry(m: StoredMessage, reader?: bigint): unknown[] {
  const second = m.kind === MessageKind.P2P && reader !== undefined ? (m.from === reader ? 1 : 2) : m.from;
  return [m.id, second, m.mtype, m.mid, false, m.msg, m.attrs, m.mtime];
}
