import { UnreadService, unreadMapsAnswer } from '../../services/unread.js';
import { clientMethod, f } from '../method.js';
import { checkList } from '../shared.js';

// client-api.md §3.3 (unread). The counting rules and the baseline live in services/unread.ts.

const typed = { mtime: f.opt(f.id), mtypes: f.opt(f.mtypes) };

/**
 * Peers / groups with anything new (every mtype); `clear` then marks all read; `gettime` adds
 * `logouttime`. The Windows SDK (RTMClient::GetUnread) sends `clear` as `clean`: the same flag.
 */
export const getunread = clientMethod({ clear: f.opt(f.bool), clean: f.opt(f.bool), gettime: f.opt(f.bool) }, async (ctx, r) => {
  const unread = new UnreadService(ctx.services.store);
  const mark = ctx.services.store.unreadMark(); // taken first: a message stored while we compute stays unread
  const { p2p, group, logoutTime } = await unread.overview(ctx.pid, ctx.uid);
  if (r.clear ?? r.clean) await unread.clear(ctx.pid, ctx.uid, mark);
  return r.gettime ? { p2p, group, logouttime: logoutTime } : { p2p, group };
});

export const cleanunread = clientMethod({}, async (ctx) => {
  await new UnreadService(ctx.services.store).clear(ctx.pid, ctx.uid);
  return {};
});

/** Peers without unread messages are absent from both maps. */
export const getp2punread = clientMethod({ uids: f.uids, ...typed }, async (ctx, r) => {
  checkList('uids', r.uids, ctx.services.config.limits.maxQueryItems, true);
  return unreadMapsAnswer('p2p', await new UnreadService(ctx.services.store).p2pCounts(ctx.pid, ctx.uid, r.uids, r));
});

/** Only groups the user is a member of count; others (and groups without unread) are absent. */
export const getgroupunread = clientMethod({ gids: f.gids, ...typed }, async (ctx, r) => {
  checkList('gids', r.gids, ctx.services.config.limits.maxQueryItems, true);
  return unreadMapsAnswer('group', await new UnreadService(ctx.services.store).groupCounts(ctx.pid, ctx.uid, r.gids, r));
});
