import { f, serverMethod } from '../method.js';
import { addGroupMembers, deleteGroup, removeGroupMembers } from '../membership.js';
import { checkList } from '../shared.js';

// server-api.md §4 "Groups": a group exists while it has members; no create call exists.

export const addgroupmembers = serverMethod({ gid: f.gid, uids: f.uids }, async (ctx, r) => {
  checkList('uids', r.uids, ctx.services.config.limits.maxItemsPerCall);
  await addGroupMembers(ctx.services, ctx.pid, r.gid, r.uids);
  return {};
});

export const delgroupmembers = serverMethod({ gid: f.gid, uids: f.uids }, async (ctx, r) => {
  checkList('uids', r.uids, ctx.services.config.limits.maxItemsPerCall);
  await removeGroupMembers(ctx.services, ctx.pid, r.gid, r.uids);
  return {};
});

/** Removes every member and the group's info. */
export const delgroup = serverMethod({ gid: f.gid }, async (ctx, r) => {
  await deleteGroup(ctx.services, ctx.pid, r.gid);
  return {};
});

export const getgroupmembers = serverMethod({ gid: f.gid }, async (ctx, r) => ({
  uids: await ctx.services.store.groupMembers(ctx.pid, r.gid),
}));

/** Go SDK only. */
export const getgroupcount = serverMethod({ gid: f.gid }, async (ctx, r) => ({
  cn: await ctx.services.store.groupMemberCount(ctx.pid, r.gid),
}));

export const isgroupmember = serverMethod({ gid: f.gid, uid: f.uid }, async (ctx, r) => ({
  ok: await ctx.services.store.isGroupMember(ctx.pid, r.gid, r.uid),
}));

export const getusergroups = serverMethod({ uid: f.uid }, async (ctx, r) => ({
  gids: await ctx.services.store.userGroups(ctx.pid, r.uid),
}));
