import { clientMethod, f } from '../method.js';
import { addGroupMembers, removeGroupMembers } from '../membership.js';
import { checkList } from '../shared.js';
import { requireGroupMember } from './access.js';

// client-api.md §4 "Rooms, groups, users" — groups. Reads of a group's members need membership
// (200041, rights summary §5); add/del need it too (old doc: "caller must be a member").

export const getusergroups = clientMethod({}, async (ctx) => ({
  gids: await ctx.services.store.userGroups(ctx.pid, ctx.uid),
}));

/** `{ uids, onlines? }`: `onlines` (members online on any node) when `online` is true. */
export const getgroupmembers = clientMethod({ gid: f.gid, online: f.opt(f.bool) }, async (ctx, r) => {
  await requireGroupMember(ctx, r.gid);
  const uids = await ctx.services.store.groupMembers(ctx.pid, r.gid);
  if (!r.online) return { uids };
  return { uids, onlines: await ctx.services.bus.queryOnline(ctx.pid, uids) };
});

/** `{ cn, online? }`: Unity requires `online` when it asked for it. */
export const getgroupcount = clientMethod({ gid: f.gid, online: f.opt(f.bool) }, async (ctx, r) => {
  await requireGroupMember(ctx, r.gid);
  if (!r.online) return { cn: await ctx.services.store.groupMemberCount(ctx.pid, r.gid) };
  const uids = await ctx.services.store.groupMembers(ctx.pid, r.gid);
  return { cn: uids.length, online: (await ctx.services.bus.queryOnline(ctx.pid, uids)).length };
});

export const addgroupmembers = clientMethod({ gid: f.gid, uids: f.uids }, async (ctx, r) => {
  checkList('uids', r.uids, ctx.services.config.limits.maxItemsPerCall);
  await requireGroupMember(ctx, r.gid);
  await addGroupMembers(ctx.services, ctx.pid, r.gid, r.uids);
  return {};
});

export const delgroupmembers = clientMethod({ gid: f.gid, uids: f.uids }, async (ctx, r) => {
  checkList('uids', r.uids, ctx.services.config.limits.maxItemsPerCall);
  await requireGroupMember(ctx, r.gid);
  await removeGroupMembers(ctx.services, ctx.pid, r.gid, r.uids);
  return {};
});
