import { f, serverMethod } from '../method.js';
import { joinRooms, leaveRooms, roomCounts, roomsToEnter } from '../membership.js';
import { checkList } from '../shared.js';

// server-api.md §4 "Rooms". Joins are refused over the per-user room limit (200047); a removal
// also sends oneway `kickoutroom {rid}` to the user's sessions (proposal).

export const addroommember = serverMethod({ rid: f.rid, uid: f.uid }, async (ctx, r) => {
  await joinRooms(ctx.services, ctx.pid, r.uid, [r.rid]);
  return {};
});

export const delroommember = serverMethod({ rid: f.rid, uid: f.uid }, async (ctx, r) => {
  await leaveRooms(ctx.services, ctx.pid, r.uid, [r.rid], true);
  return {};
});

export const getroommembers = serverMethod({ rid: f.rid }, async (ctx, r) => ({
  uids: await ctx.services.store.roomMembers(ctx.pid, r.rid),
}));

/** `{ cn: { "<rid>": n } }`, keyed by the decimal string of each rid. */
export const getroomcount = serverMethod({ rids: f.rids }, async (ctx, r) => {
  checkList('rids', r.rids, ctx.services.config.limits.maxQueryItems, true);
  return { cn: await roomCounts(ctx.services, ctx.pid, r.rids) };
});

// Go extras: several users into one room, one user into several rooms.

export const addroommembers = serverMethod({ rid: f.rid, uids: f.uids }, async (ctx, r) => {
  checkList('uids', r.uids, ctx.services.config.limits.maxItemsPerCall);
  // Check every user's room limit before changing anything.
  for (const uid of new Set(r.uids)) await roomsToEnter(ctx.services, ctx.pid, uid, [r.rid]);
  for (const uid of new Set(r.uids)) await joinRooms(ctx.services, ctx.pid, uid, [r.rid]);
  return {};
});

export const delroommembers = serverMethod({ rid: f.rid, uids: f.uids }, async (ctx, r) => {
  checkList('uids', r.uids, ctx.services.config.limits.maxItemsPerCall);
  for (const uid of new Set(r.uids)) await leaveRooms(ctx.services, ctx.pid, uid, [r.rid], true);
  return {};
});

export const adduserrooms = serverMethod({ rids: f.rids, uid: f.uid }, async (ctx, r) => {
  checkList('rids', r.rids, ctx.services.config.limits.maxItemsPerCall);
  await joinRooms(ctx.services, ctx.pid, r.uid, r.rids);
  return {};
});

export const deleteuserrooms = serverMethod({ rids: f.rids, uid: f.uid }, async (ctx, r) => {
  checkList('rids', r.rids, ctx.services.config.limits.maxItemsPerCall);
  await leaveRooms(ctx.services, ctx.pid, r.uid, r.rids, true);
  return {};
});
