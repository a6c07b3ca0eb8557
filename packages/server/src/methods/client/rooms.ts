import { missingKeyError } from '@rtm/fpnn';
import { clientMethod, f } from '../method.js';
import { joinRooms, leaveRooms, roomCounts } from '../membership.js';
import { checkList } from '../shared.js';

// client-api.md §4 — rooms. Rooms are live spaces: a user's rooms are kept while one of their
// sessions is online and cleared when the last one ends (services/sessions.ts). Anyone may enter
// any room; entering is refused over the per-user limit (200047).

export const enterroom = clientMethod({ rid: f.rid }, async (ctx, r) => {
  await joinRooms(ctx.services, ctx.pid, ctx.uid, [r.rid]);
  return {};
});

/** Unity: several rooms at once, all or none (200047 checked before entering any). */
export const enterrooms = clientMethod({ rids: f.rids }, async (ctx, r) => {
  checkList('rids', r.rids, ctx.services.config.limits.maxItemsPerCall);
  await joinRooms(ctx.services, ctx.pid, ctx.uid, r.rids);
  return {};
});

export const leaveroom = clientMethod({ rid: f.rid }, async (ctx, r) => {
  await leaveRooms(ctx.services, ctx.pid, ctx.uid, [r.rid], false);
  return {};
});

export const getuserrooms = clientMethod({}, async (ctx) => ({
  rooms: await ctx.services.store.userRooms(ctx.pid, ctx.uid),
}));

/** Room members are not private (anyone may enter): no presence check. */
export const getroommembers = clientMethod({ rid: f.rid }, async (ctx, r) => ({
  uids: await ctx.services.store.roomMembers(ctx.pid, r.rid),
}));

/**
 * `{ cn: { "<rid>": n } }`. Older Android SDKs (rtmSdk RTMRoom.getRoomCount) ask for one room,
 * `{ rid }`, and read `cn` as an int (`wantInt("cn")`): they are answered `{ cn: n }`.
 */
export const getroomcount = clientMethod({ rids: f.opt(f.rids), rid: f.opt(f.rid) }, async (ctx, r) => {
  if (r.rids === undefined && r.rid !== undefined) {
    return { cn: (await roomCounts(ctx.services, ctx.pid, [r.rid]))[r.rid.toString()] ?? 0 };
  }
  if (r.rids === undefined) throw missingKeyError('rids');
  checkList('rids', r.rids, ctx.services.config.limits.maxQueryItems, true);
  return { cn: await roomCounts(ctx.services, ctx.pid, r.rids) };
});
