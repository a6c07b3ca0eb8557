import { missingKeyError } from '@rtm/fpnn';
import { UnreadService, conversationListAnswer } from '../../services/unread.js';
import { clientMethod, f, type ClientContext } from '../method.js';

// client-api.md §3.3 (sessions and conversation lists). Rules in services/unread.ts.

const listFields = { mtime: f.opt(f.id), mtypes: f.opt(f.mtypes) };

/** Conversation lists hold at most the newest `maxQueryItems` conversations. */
const unreadOf = (ctx: ClientContext): UnreadService => new UnreadService(ctx.services.store, ctx.services.config.limits.maxQueryItems);

export const getsession = clientMethod({}, (ctx) => unreadOf(ctx).sessions(ctx.pid, ctx.uid));

/**
 * `oneway` true: only my list (client-api.md proposal); otherwise the peer's list loses me too.
 * The peer is `to` (client-api.md; the C#/Unity SDKs), or `toid`, which the Android SDK sends.
 */
export const removesession = clientMethod({ to: f.opt(f.uid), toid: f.opt(f.uid), oneway: f.opt(f.bool) }, async (ctx, r) => {
  const to = r.to ?? r.toid;
  if (to === undefined) throw missingKeyError('to');
  const { store } = ctx.services;
  await store.removeP2PSession(ctx.pid, ctx.uid, to);
  if (!r.oneway) await store.removeP2PSession(ctx.pid, to, ctx.uid);
  return {};
});

export const getp2pconversationlist = clientMethod(listFields, async (ctx, r) =>
  conversationListAnswer(await unreadOf(ctx).p2pConversations(ctx.pid, ctx.uid, r, false), ctx.uid),
);

export const getp2punreadconversationlist = clientMethod(listFields, async (ctx, r) =>
  conversationListAnswer(await unreadOf(ctx).p2pConversations(ctx.pid, ctx.uid, r, true), ctx.uid),
);

export const getgroupconversationlist = clientMethod(listFields, async (ctx, r) =>
  conversationListAnswer(await unreadOf(ctx).groupConversations(ctx.pid, ctx.uid, r, false), ctx.uid),
);

export const getgroupunreadconversationlist = clientMethod(listFields, async (ctx, r) =>
  conversationListAnswer(await unreadOf(ctx).groupConversations(ctx.pid, ctx.uid, r, true), ctx.uid),
);

/** Both unread lists; `clear` (default true, as Unity sends) marks everything read after computing them. */
export const getunreadconversationlist = clientMethod({ clear: f.opt(f.bool), ...listFields }, async (ctx, r) => {
  const unread = unreadOf(ctx);
  const mark = ctx.services.store.unreadMark(); // taken first: a message stored while we compute stays unread
  const [groups, p2p] = await Promise.all([
    unread.groupConversations(ctx.pid, ctx.uid, r, true),
    unread.p2pConversations(ctx.pid, ctx.uid, r, true),
  ]);
  if (r.clear ?? true) await unread.clear(ctx.pid, ctx.uid, mark);
  const g = conversationListAnswer(groups, ctx.uid);
  const p = conversationListAnswer(p2p, ctx.uid);
  return {
    groupConversations: g.conversations,
    groupUnreads: g.unreads,
    groupMsgs: g.msgs,
    p2pConversations: p.conversations,
    p2pUnreads: p.unreads,
    p2pMsgs: p.msgs,
  };
});
