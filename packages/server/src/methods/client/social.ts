import { clientMethod, f } from '../method.js';
import { addFriends, removeFriends } from '../membership.js';
import { inTurn } from '../serial.js';
import { checkList } from '../shared.js';

// client-api.md §4 "Friends and blacklist": the same rules as the server gate, acting as the
// logged-in uid.

export const addfriends = clientMethod({ friends: f.uids }, async (ctx, r) => {
  checkList('friends', r.friends, ctx.services.config.limits.maxItemsPerCall);
  await addFriends(ctx.services, ctx.pid, ctx.uid, r.friends);
  return {};
});

export const delfriends = clientMethod({ friends: f.uids }, async (ctx, r) => {
  checkList('friends', r.friends, ctx.services.config.limits.maxItemsPerCall);
  await removeFriends(ctx.services, ctx.pid, ctx.uid, r.friends);
  return {};
});

export const getfriends = clientMethod({}, async (ctx) => ({
  uids: await ctx.services.store.friends(ctx.pid, ctx.uid),
}));

/** Blocked users can no longer send p2p messages to me (200049). */
export const addblacks = clientMethod({ blacks: f.uids }, async (ctx, r) => {
  checkList('blacks', r.blacks, ctx.services.config.limits.maxItemsPerCall);
  const blacks = [...new Set(r.blacks)].filter((b) => b !== ctx.uid);
  await inTurn(`blacks:${ctx.pid}:${ctx.uid}`, () => ctx.services.store.addBlacks(ctx.pid, ctx.uid, blacks));
  return {};
});

export const delblacks = clientMethod({ blacks: f.uids }, async (ctx, r) => {
  checkList('blacks', r.blacks, ctx.services.config.limits.maxItemsPerCall);
  await inTurn(`blacks:${ctx.pid}:${ctx.uid}`, () => ctx.services.store.removeBlacks(ctx.pid, ctx.uid, [...new Set(r.blacks)]));
  return {};
});

/** Users I blocked. */
export const getblacks = clientMethod({}, async (ctx) => ({
  uids: await ctx.services.store.blacks(ctx.pid, ctx.uid),
}));
