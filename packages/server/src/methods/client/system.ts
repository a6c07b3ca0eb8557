import { RtmError, RtmErrorCode } from '@rtm/fpnn';
import { clientMethod, f } from '../method.js';
import { checkConnectionAttrs, kickoutEndpoint } from '../sizes.js';

// client-api.md §4 "System".

/** Merged into this connection's attributes (the ones `auth.attrs` set). */
export const addattrs = clientMethod({ attrs: f.strMap }, (ctx, r) => {
  const merged = { ...ctx.conn.session!.attrs, ...r.attrs };
  checkConnectionAttrs(ctx.services.config.limits, merged); // nothing changes when refused
  ctx.conn.session!.attrs = merged;
  return {};
});

/**
 * Proposal (client-api.md §4): one string map, this session's attrs, as newer Unity and the C++ SDK
 * read it. The Android SDK and Unity (C#) up to 2.3 read a list of maps, one per connection of the
 * user (Unity 2.3.0 failed with 20009 on the map): a session that logged in with such a `version`
 * gets that list, each map the connection's attrs with `ce` (its client gate, what a `kickout {ce}`
 * takes), `login` (seconds) and `my` ("1" for the calling connection, else "0"). The connections
 * are this node's: in a cluster, those on other nodes are not listed.
 */
export const getattrs = clientMethod({}, (ctx) => {
  const session = ctx.conn.session!;
  if (!readsAttrsAsList(session.version)) return { attrs: { ...session.attrs } };
  const ce = ctx.services.clientEndpoint();
  const sessions = [...(ctx.services.presence.connectionsOf(ctx.pid, ctx.uid) ?? [ctx.conn])]
    .filter((c) => c.session)
    .sort((a, b) => a.session!.loginAt - b.session!.loginAt);
  const attrs = sessions.map((c) => ({
    ...c.session!.attrs,
    ce,
    login: String(Math.floor(c.session!.loginAt / 1000)),
    my: c === ctx.conn ? '1' : '0',
  }));
  return { attrs };
});

/** SDKs whose getAttributes reads a list of maps, by their login `version` ("Android-2.7.3", "Unity-2.3.0", "C#-2.3.0"). */
function readsAttrsAsList(version: string): boolean {
  return /^(?:Android-|(?:Unity|C#)-2\.[0-3](?:\.|$))/.test(version);
}

export const getservertime = clientMethod({}, () => ({ mts: BigInt(Date.now()) }));

/**
 * `kickout {ce}`: a user closes their own other sessions (multi-login), never the calling one. The
 * Android (RTMSystem.kickout), Unity (RTMClient.System Kickout) and objc (kickoutWithEndPoint)
 * SDKs send it. `ce` names a client gate ("host:port", as the server gate's `kickout` and
 * `pushevent` have it): only the sessions there; absent, all of them. Each gets a oneway
 * `kickout` and is closed, on every node, as a server-gate kickout does.
 */
export const kickout = clientMethod({ ce: f.opt(f.str) }, (ctx, r) => {
  const { bus } = ctx.services;
  const endpoint = kickoutEndpoint(r.ce);
  bus.publish({ type: 'kickout', pid: ctx.pid, uid: ctx.uid, except: { node: bus.nodeId, conn: ctx.conn.id }, ...endpoint });
  return {};
});

/**
 * Characters of a client's `adddebuglog` msg (and attrs) that go into the log; the rest is cut and
 * the cut marked. Cut rather than refused: the line stays bounded whatever RTM_MAX_MSG_BYTES
 * allows (up to 8 MiB), the SDKs send these logs without expecting a refusal, and the head of a
 * client's log is what one reads.
 */
const DEBUG_LOG_MAX_CHARS = 1024;

const logged = (text: string): string =>
  text.length <= DEBUG_LOG_MAX_CHARS ? text : `${text.slice(0, DEBUG_LOG_MAX_CHARS)}… [truncated: ${text.length} characters]`;

/** Logged at info with the user (the first DEBUG_LOG_MAX_CHARS of it), then accepted (proposal). */
export const adddebuglog = clientMethod({ msg: f.str, attrs: f.opt(f.str) }, (ctx, r) => {
  ctx.services.log.info(
    { pid: ctx.pid, uid: String(ctx.uid), conn: ctx.conn.id, debugMsg: logged(r.msg), debugAttrs: logged(r.attrs ?? '') },
    'client debug log',
  );
  return {};
});

// Push notifications to devices, per-conversation push options and auto-translation are out of
// scope of this server: the methods validate their keys and are accepted as no-ops, so SDK calls
// succeed. getoption answers the empty option set. An option's `xid` (a uid or gid by `type`) is
// kept nowhere, so it is not held to > 0 as the ids of the other methods are.

export const adddevice = clientMethod({ apptype: f.str, devicetoken: f.str }, () => ({}));

export const removedevice = clientMethod({ devicetoken: f.str }, () => ({}));

export const addoption = clientMethod({ type: f.int, xid: f.id, mtypes: f.opt(f.ints) }, () => ({}));

export const removeoption = clientMethod({ type: f.int, xid: f.id, mtypes: f.opt(f.ints) }, () => ({}));

export const getoption = clientMethod({}, () => ({ p2p: {}, group: {} }));

export const setlang = clientMethod({ lang: f.str }, () => ({}));

// Value-added services (translation, moderation, speech): not provided by this server; any
// payload is accepted and answered 200060 NO_CONFIG_IN_CONSOLE.
function notProvided(method: string): never {
  throw new RtmError(RtmErrorCode.NO_CONFIG_IN_CONSOLE, `'${method}' is a value-added service that this server does not provide`);
}

export const translate = clientMethod({}, () => notProvided('translate'));
export const profanity = clientMethod({}, () => notProvided('profanity'));
export const tcheck = clientMethod({}, () => notProvided('tcheck'));
export const icheck = clientMethod({}, () => notProvided('icheck'));
export const acheck = clientMethod({}, () => notProvided('acheck'));
export const vcheck = clientMethod({}, () => notProvided('vcheck'));
export const speech2text = clientMethod({}, () => notProvided('speech2text'));
export const speechtranslation = clientMethod({}, () => notProvided('speechtranslation'));
