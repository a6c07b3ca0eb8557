import { clientMethod, f } from '../method.js';
import { checkList } from '../shared.js';

// client-api.md §4: which of these users are online (on any node).
export const getonlineusers = clientMethod({ uids: f.uids }, async (ctx, r) => {
  checkList('uids', r.uids, ctx.services.config.limits.maxOnlineQuery, true);
  return { uids: await ctx.services.bus.queryOnline(ctx.pid, [...new Set(r.uids)]) };
});
