import { FpnnErrorCode, RtmError } from '@rtm/fpnn';
import { f, serverMethod, type ServerContext } from '../method.js';
import { addListen, removeListen, setListen } from '../listen-rules.js';
import type { ServerConnection } from '../../services/listen.js';

// server-api.md §4 "Listening": the state belongs to one server-gate connection and disappears
// with it. Events defined: "login", "logout" (others are kept but never match).

// Each list may also come as a map keyed by its items: the Go SDK's reconnect restore (setOf).
const lists = { gids: f.opt(f.gidSet), rids: f.opt(f.ridSet), uids: f.opt(f.uidSet), events: f.opt(f.strSet) };
const flags = { p2p: f.opt(f.bool), group: f.opt(f.bool), room: f.opt(f.bool), ev: f.opt(f.bool) };

/**
 * The connection the listen state belongs to, from now on pinged (its SDK reads server quests).
 * Over FPNN-over-HTTP there is no connection to push to: 20013.
 */
function connection(ctx: ServerContext, method: string): ServerConnection {
  if (!ctx.conn) {
    throw new RtmError(FpnnErrorCode.CORE_FORBIDDEN, `${method} needs a persistent FPNN connection: pushes cannot reach an HTTP caller`);
  }
  ctx.conn.session!.listened = true;
  return ctx.conn;
}

export const addlisten = serverMethod(lists, (ctx, r) => {
  const conn = connection(ctx, 'addlisten');
  addListen(conn.session!.listen, r, ctx.services.config.limits.maxListenItems);
  ctx.services.listeners.update(conn);
  return {};
});

export const removelisten = serverMethod(lists, (ctx, r) => {
  const conn = connection(ctx, 'removelisten');
  removeListen(conn.session!.listen, r);
  ctx.services.listeners.update(conn);
  return {};
});

export const setlisten = serverMethod({ ...lists, ...flags }, (ctx, r) => {
  const conn = connection(ctx, 'setlisten');
  setListen(conn.session!.listen, r, ctx.services.config.limits.maxListenItems);
  ctx.services.listeners.update(conn);
  return {};
});
