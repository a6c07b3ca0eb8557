import { clientMethod, f } from '../method.js';
import { inTurn } from '../serial.js';
import { checkList, openInfos } from '../shared.js';
import { checkDataKey, checkDataLookupKey, checkDataVal, infoUpdate } from '../sizes.js';
import { requireGroupMember, requireInRoom } from './access.js';

// client-api.md §4 "Info and data". Public info (oinfo) is readable by anyone; private info
// (pinfo) and writes need membership (group 200041) or presence (room 200040).

const infoParts = { oinfo: f.opt(f.str), pinfo: f.opt(f.str) };

export const setuserinfo = clientMethod(infoParts, async (ctx, r) => {
  const update = infoUpdate(ctx.services.config.limits, r, false);
  await inTurn(`info:${ctx.pid}:user:${ctx.uid}`, () => ctx.services.store.setInfo(ctx.pid, 'user', ctx.uid, update));
  return {};
});

export const getuserinfo = clientMethod({}, async (ctx) => ({ ...(await ctx.services.store.getInfo(ctx.pid, 'user', ctx.uid)) }));

/** `{ info: { "<uid>": oinfo } }`, "" for users without info (`openInfos`). */
export const getuseropeninfo = clientMethod({ uids: f.uids }, async (ctx, r) => {
  checkList('uids', r.uids, ctx.services.config.limits.maxItemsPerCall, true);
  return { info: await openInfos(ctx.services, ctx.pid, 'user', r.uids) };
});

export const setgroupinfo = clientMethod({ gid: f.gid, ...infoParts }, async (ctx, r) => {
  const update = infoUpdate(ctx.services.config.limits, r, false);
  await requireGroupMember(ctx, r.gid);
  await inTurn(`info:${ctx.pid}:group:${r.gid}`, () => ctx.services.store.setInfo(ctx.pid, 'group', r.gid, update));
  return {};
});

export const getgroupinfo = clientMethod({ gid: f.gid }, async (ctx, r) => {
  await requireGroupMember(ctx, r.gid);
  return { ...(await ctx.services.store.getInfo(ctx.pid, 'group', r.gid)) };
});

export const getgroupopeninfo = clientMethod({ gid: f.gid }, async (ctx, r) => ({
  oinfo: (await ctx.services.store.getInfo(ctx.pid, 'group', r.gid)).oinfo,
}));

export const getgroupsopeninfo = clientMethod({ gids: f.gids }, async (ctx, r) => {
  checkList('gids', r.gids, ctx.services.config.limits.maxQueryItems, true);
  return { info: await openInfos(ctx.services, ctx.pid, 'group', r.gids) };
});

export const setroominfo = clientMethod({ rid: f.rid, ...infoParts }, async (ctx, r) => {
  const update = infoUpdate(ctx.services.config.limits, r, false);
  await requireInRoom(ctx, r.rid);
  await inTurn(`info:${ctx.pid}:room:${r.rid}`, () => ctx.services.store.setInfo(ctx.pid, 'room', r.rid, update));
  return {};
});

export const getroominfo = clientMethod({ rid: f.rid }, async (ctx, r) => {
  await requireInRoom(ctx, r.rid);
  return { ...(await ctx.services.store.getInfo(ctx.pid, 'room', r.rid)) };
});

export const getroomopeninfo = clientMethod({ rid: f.rid }, async (ctx, r) => ({
  oinfo: (await ctx.services.store.getInfo(ctx.pid, 'room', r.rid)).oinfo,
}));

export const getroomsopeninfo = clientMethod({ rids: f.rids }, async (ctx, r) => {
  checkList('rids', r.rids, ctx.services.config.limits.maxQueryItems, true);
  return { info: await openInfos(ctx.services, ctx.pid, 'room', r.rids) };
});

// Key-value data of the logged-in uid: the same store as the server gate's dataset (proposal).

export const dataset = clientMethod({ key: f.str, val: f.str }, async (ctx, r) => {
  const { limits } = ctx.services.config;
  checkDataKey(limits, r.key);
  checkDataVal(limits, r.val);
  await inTurn(`data:${ctx.pid}:${ctx.uid}`, () => ctx.services.store.dataSet(ctx.pid, ctx.uid, r.key, r.val));
  return {};
});

/** `{ val }`, or `{}` when absent. */
export const dataget = clientMethod({ key: f.str }, async (ctx, r) => {
  checkDataLookupKey(r.key);
  const val = await ctx.services.store.dataGet(ctx.pid, ctx.uid, r.key);
  return val === undefined ? {} : { val };
});

export const datadel = clientMethod({ key: f.str }, async (ctx, r) => {
  checkDataLookupKey(r.key);
  await inTurn(`data:${ctx.pid}:${ctx.uid}`, () => ctx.services.store.dataDelete(ctx.pid, ctx.uid, r.key));
  return {};
});
