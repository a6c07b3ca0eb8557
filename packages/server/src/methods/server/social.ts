import { f, serverMethod } from '../method.js';
import { addFriends, removeFriends } from '../membership.js';
import { inTurn } from '../serial.js';
import { checkList } from '../shared.js';

// server-api.md §4 "Friends and blacklists". Lists ≤ maxItemsPerCall (200032), not empty (200033)
// for add/del; friendship is symmetric (proposal), ≤ maxFriends per user (200048).

export const addfriends = serverMethod({ uid: f.uid, friends: f.uids }, async (ctx, r) => {
  checkList('friends', r.friends, ctx.services.config.limits.maxItemsPerCall);
  await addFriends(ctx.services, ctx.pid, r.uid, r.friends);
  return {};
});

export const delfriends = serverMethod({ uid: f.uid, friends: f.uids }, async (ctx, r) => {
  checkList('friends', r.friends, ctx.services.config.limits.maxItemsPerCall);
  await removeFriends(ctx.services, ctx.pid, r.uid, r.friends);
  return {};
});

export const getfriends = serverMethod({ uid: f.uid }, async (ctx, r) => ({
  uids: await ctx.services.store.friends(ctx.pid, r.uid),
}));

export const isfriend = serverMethod({ uid: f.uid, fuid: f.uid }, async (ctx, r) => ({
  ok: (await ctx.services.store.filterFriends(ctx.pid, r.uid, [r.fuid])).length > 0,
}));

/** Those of `fuids` who are friends of `uid`. */
export const isfriends = serverMethod({ uid: f.uid, fuids: f.uids }, async (ctx, r) => {
  checkList('fuids', r.fuids, ctx.services.config.limits.maxItemsPerCall, true);
  return { fuids: await ctx.services.store.filterFriends(ctx.pid, r.uid, [...new Set(r.fuids)]) };
});

/** `uid` blocks `blacks`: they can no longer send p2p to `uid` (200049). */
export const addblacks = serverMethod({ uid: f.uid, blacks: f.uids }, async (ctx, r) => {
  checkList('blacks', r.blacks, ctx.services.config.limits.maxItemsPerCall);
  const blacks = [...new Set(r.blacks)].filter((b) => b !== r.uid);
  await inTurn(`blacks:${ctx.pid}:${r.uid}`, () => ctx.services.store.addBlacks(ctx.pid, r.uid, blacks));
  return {};
});

export const delblacks = serverMethod({ uid: f.uid, blacks: f.uids }, async (ctx, r) => {
  checkList('blacks', r.blacks, ctx.services.config.limits.maxItemsPerCall);
  await inTurn(`blacks:${ctx.pid}:${r.uid}`, () => ctx.services.store.removeBlacks(ctx.pid, r.uid, [...new Set(r.blacks)]));
  return {};
});

/** Users blocked by `uid`. */
export const getblacks = serverMethod({ uid: f.uid }, async (ctx, r) => ({
  uids: await ctx.services.store.blacks(ctx.pid, r.uid),
}));

/** true when `buid` has blocked `uid` (uid's messages would not reach buid). */
export const isblack = serverMethod({ uid: f.uid, buid: f.uid }, async (ctx, r) => ({
  ok: (await ctx.services.store.blockedBy(ctx.pid, r.uid, [r.buid])).length > 0,
}));

/** Those of `buids` who have blocked `uid`. */
export const isblacks = serverMethod({ uid: f.uid, buids: f.uids }, async (ctx, r) => {
  checkList('buids', r.buids, ctx.services.config.limits.maxItemsPerCall, true);
  return { buids: await ctx.services.store.blockedBy(ctx.pid, r.uid, [...new Set(r.buids)]) };
});
