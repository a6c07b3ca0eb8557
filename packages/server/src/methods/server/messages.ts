import { timeBounds } from '../../services/history.js';
import { MessageKind } from '../../store/store.js';
import { f, serverMethod, type ServerContext } from '../method.js';
import {
  conversationTarget,
  getMessageOrThrow,
  messageInfo,
  messageKey,
  messageKind,
  p2p,
  pageFields,
  stream,
  messageKeyFields,
} from '../shared.js';
import { RtmError, RtmErrorCode } from '@rtm/fpnn';

// server-api.md §2: the five send methods. Answer { mtime } (ms).
const common = { from: f.uid, mtype: f.int, mid: f.id, msg: f.body, attrs: f.str };

type ServerSend = { from: bigint; mid: bigint; mtype: number; msg: string | Uint8Array; attrs: string; to?: bigint; tos?: bigint[] };

/** Sends on behalf of `from`, naming this connection (a listening backend hears it after the answer); answers `{ mtime }`. */
async function send(ctx: ServerContext, kind: MessageKind, r: ServerSend): Promise<{ mtime: bigint }> {
  const { from, mid, mtype, msg, attrs, to, tos } = r;
  return {
    mtime: await ctx.services.messaging.send({
      pid: ctx.pid,
      kind,
      from,
      to,
      tos,
      mid,
      mtype,
      msg,
      attrs,
      gate: 'server',
      originConn: ctx.conn?.id,
    }),
  };
}

export const sendmsg = serverMethod({ ...common, to: f.uid }, (ctx, r) => send(ctx, MessageKind.P2P, r));

export const sendmsgs = serverMethod({ ...common, tos: f.uids }, (ctx, r) => send(ctx, MessageKind.P2P, r));

export const sendgroupmsg = serverMethod({ ...common, gid: f.gid }, (ctx, r) => send(ctx, MessageKind.GROUP, { ...r, to: r.gid }));

export const sendroommsg = serverMethod({ ...common, rid: f.rid }, (ctx, r) => send(ctx, MessageKind.ROOM, { ...r, to: r.rid }));

export const broadcastmsg = serverMethod(common, (ctx, r) => send(ctx, MessageKind.BROADCAST, { ...r, to: 0n }));

// server-api.md §3.1: history. The backend reads any conversation on behalf of `uid`. Group, room
// and broadcast pages need no reader: `uid` is optional there, as the PHP server SDK
// (getGroupMessage, getRoomMessage, getBroadcastMessage) and older Node and Java ones never send it.
// Unused, so not checked either: Go always sends it, with 0 as its "none" (as for begin/end/lastid).
const reader = { uid: f.opt(f.id) };

export const getgroupmsg = serverMethod({ gid: f.gid, ...reader, ...pageFields }, (ctx, r) =>
  ctx.services.history.page('server', stream(ctx.pid, MessageKind.GROUP, r.gid), undefined, r),
);

export const getroommsg = serverMethod({ rid: f.rid, ...reader, ...pageFields }, (ctx, r) =>
  ctx.services.history.page('server', stream(ctx.pid, MessageKind.ROOM, r.rid), undefined, r),
);

export const getbroadcastmsg = serverMethod({ ...reader, ...pageFields }, (ctx, r) =>
  ctx.services.history.page('server', stream(ctx.pid, MessageKind.BROADCAST, 0n), undefined, r),
);

export const getp2pmsg = serverMethod({ uid: f.uid, ouid: f.uid, ...pageFields }, (ctx, r) =>
  ctx.services.history.page('server', p2p(ctx.pid, r.uid, r.ouid), r.uid, r),
);

// §3.2–3.4: one message, deletion, counts.
export const getmsg = serverMethod(messageKeyFields, async (ctx, r) =>
  messageInfo('server', await getMessageOrThrow(ctx.services, messageKey(ctx.pid, r))),
);

export const delmsg = serverMethod(messageKeyFields, async (ctx, r) => {
  const key = messageKey(ctx.pid, r);
  if (!(await ctx.services.store.deleteMessage(key)))
    throw new RtmError(RtmErrorCode.MESSAGE_NOT_FOUND, `no message ${r.mid} from ${r.from} in that conversation`);
  return {};
});

export const getmsgnum = serverMethod(
  { type: f.int, xid: f.id, mtypes: f.opt(f.mtypes), begin: f.opt(f.id), end: f.opt(f.id) },
  async (ctx, r) => {
    const kind = messageKind(r.type);
    if (kind !== MessageKind.GROUP && kind !== MessageKind.ROOM)
      throw new RtmError(RtmErrorCode.INVALID_PARAMETER, 'getmsgnum counts group (2) or room (3) messages');
    return ctx.services.store.countMessages({
      pid: ctx.pid,
      kind,
      to: conversationTarget(kind, r.xid),
      mtypes: r.mtypes?.length ? r.mtypes : undefined,
      ...timeBounds(r),
    });
  },
);
