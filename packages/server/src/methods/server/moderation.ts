import { f, serverMethod } from '../method.js';
import { banTarget, banUntil } from '../moderation-rules.js';
import { inTurn } from '../serial.js';

// server-api.md §4 "Bans and project blacklist". Bans forbid sending (200044 / 200045); the
// banned user keeps receiving. A ban without gid/rid (or ≤ 0, Go) applies to every group/room:
// so gid / rid are `f.id` here, not `f.gid` / `f.rid` (isbanof*: ≤ 0 asks about that ban).

const now = (): bigint => BigInt(Date.now());

export const addgroupban = serverMethod({ gid: f.opt(f.id), uid: f.uid, btime: f.int }, async (ctx, r) => {
  await inTurn(`ban:${ctx.pid}:group:${r.uid}`, () =>
    ctx.services.store.addBan(ctx.pid, 'group', banTarget(r.gid), r.uid, banUntil(r.btime)),
  );
  return {};
});

export const removegroupban = serverMethod({ gid: f.opt(f.id), uid: f.uid }, async (ctx, r) => {
  await inTurn(`ban:${ctx.pid}:group:${r.uid}`, () => ctx.services.store.removeBan(ctx.pid, 'group', banTarget(r.gid), r.uid));
  return {};
});

/** true if banned in this group or in all groups (gid ≤ 0: in all groups). */
export const isbanofgroup = serverMethod({ gid: f.id, uid: f.uid }, async (ctx, r) => ({
  ok: await ctx.services.store.isBanned(ctx.pid, 'group', banTarget(r.gid), r.uid, now()),
}));

export const addroomban = serverMethod({ rid: f.opt(f.id), uid: f.uid, btime: f.int }, async (ctx, r) => {
  await inTurn(`ban:${ctx.pid}:room:${r.uid}`, () =>
    ctx.services.store.addBan(ctx.pid, 'room', banTarget(r.rid), r.uid, banUntil(r.btime)),
  );
  return {};
});

export const removeroomban = serverMethod({ rid: f.opt(f.id), uid: f.uid }, async (ctx, r) => {
  await inTurn(`ban:${ctx.pid}:room:${r.uid}`, () => ctx.services.store.removeBan(ctx.pid, 'room', banTarget(r.rid), r.uid));
  return {};
});

export const isbanofroom = serverMethod({ rid: f.id, uid: f.uid }, async (ctx, r) => ({
  ok: await ctx.services.store.isBanned(ctx.pid, 'room', banTarget(r.rid), r.uid, now()),
}));

/** Old doc: the user can no longer log in (200024) and is kicked out if online (every node). */
export const addprojectblack = serverMethod({ uid: f.uid, btime: f.int }, async (ctx, r) => {
  await inTurn(`projectblack:${ctx.pid}:${r.uid}`, () => ctx.services.store.addProjectBlack(ctx.pid, r.uid, banUntil(r.btime)));
  ctx.services.bus.publish({ type: 'kickout', pid: ctx.pid, uid: r.uid });
  return {};
});

export const removeprojectblack = serverMethod({ uid: f.uid }, async (ctx, r) => {
  await inTurn(`projectblack:${ctx.pid}:${r.uid}`, () => ctx.services.store.removeProjectBlack(ctx.pid, r.uid));
  return {};
});

export const isprojectblack = serverMethod({ uid: f.uid }, async (ctx, r) => ({
  ok: await ctx.services.store.isProjectBlack(ctx.pid, r.uid, now()),
}));

// Go SDK: addprojectban / removeprojectban / isprojectban (`uid`, `btime`) — the same blacklist.
export const addprojectban = addprojectblack;
export const removeprojectban = removeprojectblack;
export const isprojectban = isprojectblack;
