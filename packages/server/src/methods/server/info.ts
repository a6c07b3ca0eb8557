import { f, serverMethod } from '../method.js';
import { inTurn } from '../serial.js';
import { checkList, openInfos } from '../shared.js';
import { checkDataKey, checkDataLookupKey, checkDataVal, infoUpdate } from '../sizes.js';

// server-api.md §4 "User / group / room info, key-value data". `oinfo` = public, `pinfo` = private;
// get*info always answers both ("" when unset). Sizes: see ../sizes.ts.

const infoParts = { oinfo: f.opt(f.str), pinfo: f.opt(f.str) };

export const setuserinfo = serverMethod({ uid: f.uid, ...infoParts }, async (ctx, r) => {
  const update = infoUpdate(ctx.services.config.limits, r, true);
  await inTurn(`info:${ctx.pid}:user:${r.uid}`, () => ctx.services.store.setInfo(ctx.pid, 'user', r.uid, update));
  return {};
});

export const getuserinfo = serverMethod({ uid: f.uid }, async (ctx, r) => ({
  ...(await ctx.services.store.getInfo(ctx.pid, 'user', r.uid)),
}));

/** `{ info: { "<uid>": oinfo } }`, "" for users without info (`openInfos`). */
export const getuseropeninfo = serverMethod({ uids: f.uids }, async (ctx, r) => {
  checkList('uids', r.uids, ctx.services.config.limits.maxItemsPerCall, true);
  return { info: await openInfos(ctx.services, ctx.pid, 'user', r.uids) };
});

export const setgroupinfo = serverMethod({ gid: f.gid, ...infoParts }, async (ctx, r) => {
  const update = infoUpdate(ctx.services.config.limits, r, true);
  await inTurn(`info:${ctx.pid}:group:${r.gid}`, () => ctx.services.store.setInfo(ctx.pid, 'group', r.gid, update));
  return {};
});

export const getgroupinfo = serverMethod({ gid: f.gid }, async (ctx, r) => ({
  ...(await ctx.services.store.getInfo(ctx.pid, 'group', r.gid)),
}));

export const setroominfo = serverMethod({ rid: f.rid, ...infoParts }, async (ctx, r) => {
  const update = infoUpdate(ctx.services.config.limits, r, true);
  await inTurn(`info:${ctx.pid}:room:${r.rid}`, () => ctx.services.store.setInfo(ctx.pid, 'room', r.rid, update));
  return {};
});

export const getroominfo = serverMethod({ rid: f.rid }, async (ctx, r) => ({
  ...(await ctx.services.store.getInfo(ctx.pid, 'room', r.rid)),
}));

// Per-user key-value data, the same store as the client gate's dataset/dataget/datadel.

export const dataset = serverMethod({ uid: f.uid, key: f.str, val: f.str }, async (ctx, r) => {
  const { limits } = ctx.services.config;
  checkDataKey(limits, r.key);
  checkDataVal(limits, r.val);
  await inTurn(`data:${ctx.pid}:${r.uid}`, () => ctx.services.store.dataSet(ctx.pid, r.uid, r.key, r.val));
  return {};
});

/** `{ val }`, or `{}` when the key does not exist. */
export const dataget = serverMethod({ uid: f.uid, key: f.str }, async (ctx, r) => {
  checkDataLookupKey(r.key);
  const val = await ctx.services.store.dataGet(ctx.pid, r.uid, r.key);
  return val === undefined ? {} : { val };
});

export const datadel = serverMethod({ uid: f.uid, key: f.str }, async (ctx, r) => {
  checkDataLookupKey(r.key);
  await inTurn(`data:${ctx.pid}:${r.uid}`, () => ctx.services.store.dataDelete(ctx.pid, r.uid, r.key));
  return {};
});
