import { randomBytes } from 'node:crypto';
import { RtmError, RtmErrorCode } from '@rtm/fpnn';
import { f, serverMethod } from '../method.js';
import { inTurn } from '../serial.js';
import { checkList } from '../shared.js';

// server-api.md §4 "Tokens and sessions".

/**
 * Opaque 32-char upper-case hex, stable per (pid, uid) until removetoken (proposal). A uid ≤ 0
 * gets the error `auth` would give it (200001) rather than a token no login can use.
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
export const removetoken = serverMethod({ uid: f.id }, async (ctx, r) => {
  await inTurn(`token:${ctx.pid}:${r.uid}`, () => ctx.services.store.deleteToken(ctx.pid, r.uid));
  return {};
});

/** How long a kickout is kept for the nodes cut off from the bus when it was published. */
const KICKOUT_KEPT_MS = 24 * 3_600_000;

/**
 * Oneway `kickout` to every client session of the user, on every node, then close them; with `ce`
 * (a client gate's "host:port", as `pushevent` gives it) only the sessions at that gate. With a
 * bus that can lose nodes (a cluster), also recorded for the nodes cut off from it now, which
 * read it when they are back (services/resync.ts); a store that fails to record it is logged,
 * and the kickout still reaches every node the bus does.
 */
export const kickout = serverMethod({ uid: f.id, ce: f.opt(f.str) }, async (ctx, r) => {
  const { bus, store, log } = ctx.services;
  const at = Date.now();
  bus.publish({ type: 'kickout', pid: ctx.pid, uid: r.uid, ...(r.ce ? { endpoint: r.ce } : {}) });
  if (bus.connected !== undefined) {
    const record = { pid: ctx.pid, uid: r.uid, at: BigInt(at), ...(r.ce ? { endpoint: r.ce } : {}) };
    await store
      .recordKickout(record, BigInt(at - KICKOUT_KEPT_MS))
      .catch((err: unknown) =>
        log.warn({ err, pid: ctx.pid, uid: String(r.uid) }, 'kickout not recorded for the nodes cut off from the bus'),
      );
  }
  return {};
});

export const getonlineusers = serverMethod({ uids: f.ids }, async (ctx, r) => {
  checkList('uids', r.uids, ctx.services.config.limits.maxOnlineQuery, true);
  return { uids: await ctx.services.bus.queryOnline(ctx.pid, [...new Set(r.uids)]) };
});
