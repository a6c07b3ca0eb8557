import { randomBytes } from 'node:crypto';
import { RtmError, RtmErrorCode } from '@rtm/fpnn';
import { f, serverMethod } from '../method.js';
import { inTurn } from '../serial.js';
import { checkList } from '../shared.js';
import { kickoutEndpoint } from '../sizes.js';
import { keepKickout } from '../../services/resync.js';

// server-api.md §4 "Tokens and sessions".

/**
 * Opaque 32-char upper-case hex, stable per (pid, uid) until removetoken (proposal). A uid ≤ 0
 * gets the error `auth` would give it (200001) rather than a token no login can use: so `uid` is
 * `f.id` here, not `f.uid` (whose 200034 the other methods answer).
 */
export const gettoken = serverMethod({ uid: f.id }, async (ctx, r) => {
  if (r.uid <= 0n) throw new RtmError(RtmErrorCode.INVALID_PROJECT_ID_OR_USER_ID, `invalid uid ${r.uid}: users are > 0`);
  const { store } = ctx.services;
  const token = await inTurn(
    `token:${ctx.pid}:${r.uid}`,
    async () =>
      (await store.getToken(ctx.pid, r.uid)) ?? (await store.issueToken(ctx.pid, r.uid, randomBytes(16).toString('hex').toUpperCase())),
  );
  return { token };
});

/** The token stops working for new logins; live sessions stay. */
export const removetoken = serverMethod({ uid: f.uid }, async (ctx, r) => {
  await inTurn(`token:${ctx.pid}:${r.uid}`, () => ctx.services.store.deleteToken(ctx.pid, r.uid));
  return {};
});

/**
 * Oneway `kickout` to every client session of the user, on every node, then close them; with `ce`
 * (a client gate's "host:port", as `pushevent` gives it) only the sessions at that gate. In a
 * cluster also kept for the nodes cut off from the bus now (services/resync.ts `keepKickout`).
 */
export const kickout = serverMethod({ uid: f.uid, ce: f.opt(f.str) }, async (ctx, r) => {
  const endpoint = kickoutEndpoint(r.ce);
  const at = BigInt(Date.now());
  ctx.services.bus.publish({ type: 'kickout', pid: ctx.pid, uid: r.uid, ...endpoint });
  await keepKickout(ctx.services, { pid: ctx.pid, uid: r.uid, at, ...endpoint });
  return {};
});

export const getonlineusers = serverMethod({ uids: f.uids }, async (ctx, r) => {
  checkList('uids', r.uids, ctx.services.config.limits.maxOnlineQuery, true);
  return { uids: await ctx.services.bus.queryOnline(ctx.pid, [...new Set(r.uids)]) };
});
