import { RtmError, RtmErrorCode, type Payload } from '@rtm/fpnn';
import type { Services } from '../services/index.js';
import { MessageKind, type ConversationRef, type InfoKind, type MessageKey, type StoredMessage } from '../store/store.js';
import { clientStoredBody, type Audience } from '../services/pushes.js';
import { f } from './method.js';

/** The history keys common to every get*msg method (server-api.md §3.1). */
export const pageFields = {
  desc: f.bool,
  num: f.int,
  begin: f.opt(f.id),
  end: f.opt(f.id),
  lastid: f.opt(f.id),
  mtypes: f.opt(f.mtypes),
};

/** The keys of getmsg / delmsg (server-api.md §3.2–3.3). `xid` is checked with `type` (`messageKey`). */
export const messageKeyFields = { mid: f.id, from: f.uid, xid: f.id, type: f.int };

export function messageKind(type: number): MessageKind {
  if (type === 1 || type === 2 || type === 3 || type === 4) return type;
  throw new RtmError(RtmErrorCode.INVALID_PARAMETER, `type must be 1 (p2p), 2 (group), 3 (room) or 4 (broadcast), got ${type}`);
}

const XID_NAMES = { 1: 'uid', 2: 'gid', 3: 'rid' } as const;

/**
 * The conversation `xid` names for a message kind: the peer uid (p2p), the gid or the rid, > 0 as
 * every such id (method.ts `f.uid`), else 200034; broadcast has none (the SDKs send 0): any is
 * accepted and 0 used.
 */
export function conversationTarget(kind: MessageKind, xid: bigint): bigint {
  if (kind === MessageKind.BROADCAST) return 0n;
  if (xid <= 0n) throw new RtmError(RtmErrorCode.INVALID_PARAMETER, `xid must be > 0 (a ${XID_NAMES[kind]} for type ${kind}), got ${xid}`);
  return xid;
}

export function messageKey(pid: number, req: { mid: bigint; from: bigint; xid: bigint; type: number }): MessageKey {
  const kind = messageKind(req.type);
  return { pid, kind, from: req.from, to: conversationTarget(kind, req.xid), mid: req.mid };
}

/** `getmsg`'s answer (server-api.md §3.2); a client gets text bodies as strings (`clientStoredBody`). */
export function messageInfo(audience: Audience, m: StoredMessage): Payload {
  return { id: m.id, mtype: m.mtype, msg: audience === 'client' ? clientStoredBody(m) : m.msg, attrs: m.attrs, mtime: m.mtime };
}

export async function getMessageOrThrow(services: Services, key: MessageKey): Promise<StoredMessage> {
  const m = await services.store.getMessage(key);
  if (!m) throw new RtmError(RtmErrorCode.MESSAGE_NOT_FOUND, `no message ${key.mid} from ${key.from} in that conversation`);
  return m;
}

export const p2p = (pid: number, uid: bigint, peer: bigint): ConversationRef => ({ pid, kind: MessageKind.P2P, uid, peer });
export const stream = (pid: number, kind: 2 | 3 | 4, to: bigint): ConversationRef => ({ pid, kind, to });

/** Rejects a list longer than the per-call limit (200032) or empty where members are required (200033). */
export function checkList(name: string, items: readonly unknown[], max: number, allowEmpty = false): void {
  if (!allowEmpty && items.length === 0) throw new RtmError(RtmErrorCode.EMPTY_PARAMETER, `${name} must not be empty`);
  if (items.length > max)
    throw new RtmError(RtmErrorCode.TOO_MANY_ITEMS_IN_PARAMETERS, `${name} has ${items.length} items, the limit is ${max}`);
}

/**
 * `{ "<id>": oinfo }` keyed by decimal id strings, as the SDKs read them (client-api.md §3.3), for
 * every id asked about, "" for those without info. The spec lets a server leave them out, but then
 * the answer for ids that all lack info is an empty map, which the PHP SDK's msgpack decodes to a
 * `stdClass` its callers cannot index; so every id is listed.
 */
export async function openInfos(services: Services, pid: number, kind: InfoKind, ids: readonly bigint[]): Promise<Record<string, string>> {
  const unique = [...new Set(ids)];
  const found = await services.store.getOpenInfos(pid, kind, unique);
  const out: Record<string, string> = {};
  for (const id of unique) out[id.toString()] = found.get(id) ?? '';
  return out;
}
