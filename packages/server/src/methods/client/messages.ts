import { RtmError, RtmErrorCode } from '@rtm/fpnn';
import { MessageKind } from '../../store/store.js';
import { clientMethod, f, type ClientContext } from '../method.js';
import { requireGroupMember, requireInRoom } from './access.js';
import { getMessageOrThrow, messageInfo, messageKey, messageKeyFields, p2p, pageFields, stream } from '../shared.js';

// client-api.md §3.1: sends act as the logged-in uid; membership is always enforced.
const common = { mid: f.id, mtype: f.int, msg: f.body, attrs: f.opt(f.str) };

type ClientSend = { mid: bigint; mtype: number; msg: string | Uint8Array; attrs?: string };

/** Sends as the logged-in user, never pushed back to this connection; answers `{ mtime }`. */
function send(ctx: ClientContext, kind: MessageKind, to: bigint, r: ClientSend): Promise<{ mtime: bigint }> {
  const { pid, uid: from, conn } = ctx;
  return ctx.services.messaging
    .send({
      pid,
      kind,
      from,
      to,
      mid: r.mid,
      mtype: r.mtype,
      msg: r.msg,
      attrs: r.attrs ?? '',
      gate: 'client',
      originConn: conn.id,
    })
    .then(mtimeAnswer);
}

const mtimeAnswer = (mtime: bigint): { mtime: bigint } => ({ mtime });

export const sendmsg = clientMethod({ ...common, to: f.uid }, (ctx, r) => send(ctx, MessageKind.P2P, r.to, r));

export const sendgroupmsg = clientMethod({ ...common, gid: f.gid }, (ctx, r) => send(ctx, MessageKind.GROUP, r.gid, r));

export const sendroommsg = clientMethod({ ...common, rid: f.rid }, (ctx, r) => send(ctx, MessageKind.ROOM, r.rid, r));

// client-api.md §3.2: history with the logged-in uid as reader.
export const getgroupmsg = clientMethod({ gid: f.gid, ...pageFields }, async (ctx, r) => {
  await requireGroupMember(ctx, r.gid);
  return ctx.services.history.page('client', stream(ctx.pid, MessageKind.GROUP, r.gid), undefined, r);
});

export const getroommsg = clientMethod({ rid: f.rid, ...pageFields }, async (ctx, r) => {
  await requireInRoom(ctx, r.rid);
  return ctx.services.history.page('client', stream(ctx.pid, MessageKind.ROOM, r.rid), undefined, r);
});

export const getbroadcastmsg = clientMethod(pageFields, (ctx, r) =>
  ctx.services.history.page('client', stream(ctx.pid, MessageKind.BROADCAST, 0n), undefined, r),
);

export const getp2pmsg = clientMethod({ ouid: f.uid, ...pageFields }, (ctx, r) =>
  ctx.services.history.page('client', p2p(ctx.pid, ctx.uid, r.ouid), ctx.uid, r),
);

// client-api.md §3.4: one message. p2p only for its sender or receiver; group/room by membership.
async function authorizeRead(ctx: ClientContext, r: { from: bigint; xid: bigint; type: number }): Promise<void> {
  if (r.type === MessageKind.P2P && ctx.uid !== r.from && ctx.uid !== r.xid) {
    throw new RtmError(RtmErrorCode.PERMISSION_DENIED, 'only the sender or the receiver may read a p2p message');
  }
  if (r.type === MessageKind.GROUP) await requireGroupMember(ctx, r.xid);
  if (r.type === MessageKind.ROOM) await requireInRoom(ctx, r.xid);
}

export const getmsg = clientMethod(messageKeyFields, async (ctx, r) => {
  // p2p `xid`: client-api.md §3.4 says "the peer", server-api.md §3.3 "the receiver". For the
  // sender both are the other user; for the receiver they differ (the sender, or me). Both work.
  const xid = r.type === MessageKind.P2P && r.from !== ctx.uid && r.xid === r.from ? ctx.uid : r.xid;
  const key = messageKey(ctx.pid, { ...r, xid });
  await authorizeRead(ctx, { ...r, xid });
  return messageInfo('client', await getMessageOrThrow(ctx.services, key));
});

/** A client may delete only messages it sent (200021). */
export const delmsg = clientMethod(messageKeyFields, async (ctx, r) => {
  const key = messageKey(ctx.pid, r);
  if (r.from !== ctx.uid) throw new RtmError(RtmErrorCode.PERMISSION_DENIED, 'a client may delete only its own messages');
  if (!(await ctx.services.store.deleteMessage(key)))
    throw new RtmError(RtmErrorCode.MESSAGE_NOT_FOUND, `no message ${r.mid} from ${r.from} in that conversation`);
  return {};
});
