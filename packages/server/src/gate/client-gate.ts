import { FpnnErrorCode, RtmError, RtmErrorCode, schema as s, type IncomingQuest, type Payload } from '@rtm/fpnn';
import { invoke, type ClientContext, type MethodTable } from '../methods/method.js';
import type { Services } from '../services/index.js';
import type { ClientSession } from '../services/presence.js';
import { KICKED_OUT } from '../services/sessions.js';
import { keepKickout } from '../services/resync.js';
import type { Connection } from './connection.js';
import { checkConnectionAttrs } from '../methods/sizes.js';
import { Gate, type GateOptions } from './gate.js';
import { hmacToken, refuseHmacToken, sameSecret } from './login-token.js';
import { RateLimiter } from './rate-limit.js';

const authSchema = {
  pid: s.int,
  uid: s.id,
  token: s.str,
  version: s.optional(s.str),
  attrs: s.optional(s.strMap),
  ts: s.optional(s.id),
  authv: s.optional(s.int),
};

/** Largest frame before a login, besides the attrs an `auth` may carry (`ClientGate`). */
const PRE_LOGIN_FRAME_BYTES = 64 * 1024;
/**
 * Quests before a login (`*key` too, not `*ping`); one more closes the connection. A client sends
 * a few (`*key`, `auth`, an `auth` again after a refusal): this bounds what refusing the quests of
 * a peer nobody knows costs per connection.
 */
const PRE_LOGIN_QUESTS = 100;

/**
 * The client gate (client-api.md): end users log in once per connection with `auth`; until then
 * every method is refused with 200022, in this one place. A client acts only as its own uid.
 */
export class ClientGate extends Gate<ClientSession> {
  private readonly limiter: RateLimiter;
  private readonly sweepTimer: NodeJS.Timeout;

  constructor(
    options: GateOptions,
    private readonly services: Services,
    private readonly methods: MethodTable<ClientContext>,
  ) {
    // Before a login only small frames come (auth, which, *ping, *key): an auth's attrs may take
    // maxAttrsBytes (keys and values), the rest of it a few hundred bytes.
    super({
      ...options,
      maxFrameBytesBeforeLift: Math.min(options.maxFrameBytes, PRE_LOGIN_FRAME_BYTES + 2 * services.config.limits.maxAttrsBytes),
      maxQuestsBeforeLift: PRE_LOGIN_QUESTS,
    });
    const { config } = services;
    this.limiter = new RateLimiter(config.clientCallsPerSecond, config.clientCallBurst);
    this.sweepTimer = setInterval(() => this.limiter.sweep(), 60_000);
    this.sweepTimer.unref();
  }

  protected serve(conn: Connection<ClientSession>, quest: IncomingQuest): Payload | Promise<Payload> {
    const { method } = quest;
    if (method === 'auth') return this.auth(conn, quest.payload);
    if (method === 'which') return this.which(quest.payload);
    const session = conn.session;
    if (!session) throw new RtmError(RtmErrorCode.UNAUTHORIZED, `'${method}' needs a login: send 'auth' first`);
    if (this.loggedOut.has(conn)) throw new RtmError(RtmErrorCode.UNAUTHORIZED, `'${method}' after 'bye': the session is over`);
    if (method === 'bye') return this.bye(conn);
    if (!this.limiter.take(`${session.pid}:${session.uid}`)) {
      throw new RtmError(
        RtmErrorCode.API_FREQUENCY_LIMITED,
        `too many calls: the limit is ${this.services.config.clientCallsPerSecond}/s per user`,
      );
    }
    const def = this.methods[method];
    if (!def || !Object.hasOwn(this.methods, method)) throw new RtmError(FpnnErrorCode.CORE_UNKNOWN_METHOD, `unknown method '${method}'`);
    return invoke(def, { pid: session.pid, uid: session.uid, services: this.services, conn: conn as ClientContext['conn'] }, quest.payload);
  }

  /** Connections whose `auth` is under way: a second one, sent with it, must not log in too. */
  private readonly authenticating = new WeakSet<Connection<ClientSession>>();

  /** Connections whose first refused login was logged at info (later ones at debug). */
  private readonly loginRefusalLogged = new WeakSet<Connection<ClientSession>>();

  /** `auth` (client-api.md §2): a bad token is `{ok:false}`, not an error. */
  private async auth(conn: Connection<ClientSession>, payload: Payload): Promise<Payload> {
    if (conn.session || this.authenticating.has(conn)) {
      throw new RtmError(RtmErrorCode.DUPLCATED_AUTH, 'this connection is already logged in (or logging in)');
    }
    this.authenticating.add(conn);
    try {
      return await this.login(conn, payload);
    } finally {
      this.authenticating.delete(conn);
    }
  }

  private async login(conn: Connection<ClientSession>, payload: Payload): Promise<Payload> {
    // A kickout (or blacklisting) from now on ends this login, even one that comes while the token
    // is being checked: the login is not yet a session the kickout could close.
    const started = Date.now();
    const req = s.parse(authSchema, payload);
    const { config, store } = this.services;
    if (req.attrs) checkConnectionAttrs(config.limits, req.attrs);
    const project = config.projects.find((p) => p.pid === req.pid);
    if (!project) throw new RtmError(RtmErrorCode.INVALID_PROJECT_ID_OR_USER_ID, `unknown project ${req.pid}`);
    if (req.uid <= 0n) throw new RtmError(RtmErrorCode.INVALID_PROJECT_ID_OR_USER_ID, `invalid uid ${req.uid}`);
    const refused = req.authv === 2 ? this.refuseV2Token(project.hmacSecret, req) : await this.refuseStoredToken(req);
    if (refused) {
      // The first refusal on a connection at info, later ones at debug: a client retrying a bad
      // token would flood the log (as refused server-gate signatures, server-gate.ts authFailed).
      const first = !this.loginRefusalLogged.has(conn);
      this.loginRefusalLogged.add(conn);
      const fields = { pid: req.pid, uid: String(req.uid), remote: conn.remote, why: refused };
      if (first) this.log.info(fields, 'login refused: bad token');
      else this.log.debug(fields, 'login refused: bad token');
      return { ok: false };
    }
    if (config.broadcastAdminUids.includes(req.uid)) {
      throw new RtmError(
        RtmErrorCode.ADMIN_LOGIN,
        `user ${req.uid} is an admin id (RTM_BROADCAST_ADMIN_UIDS): it may not log in as a client`,
      );
    }
    if (await store.isProjectBlack(req.pid, req.uid, BigInt(Date.now()))) {
      throw new RtmError(RtmErrorCode.AUTH_DENIED, `user ${req.uid} is on the project blacklist`);
    }
    if (conn.closed) return { ok: false };
    conn.session = { pid: req.pid, uid: req.uid, attrs: { ...req.attrs }, version: req.version ?? '', loginAt: started };
    conn.liftFrameLimit();
    // The login makes the connection a push target before this answer is written: pushes wait
    // until it is (the answer goes out in this microtask drain; setImmediate runs after it).
    conn.holdPushes();
    try {
      await this.services.sessions.login(conn as ClientContext['conn']);
    } catch (err) {
      // Half logged in (a store error): close rather than keep a session the client was told failed.
      conn.close('login failed');
      throw err;
    } finally {
      setImmediate(() => conn.releasePushes());
    }
    const login = { at: started, node: this.services.bus.nodeId, conn: conn.id };
    if (this.services.delivery.kickedSince(req.pid, req.uid, login)) {
      // Kicked out (or blacklisted) while this login was under way, or a later login of the user
      // (RTM_SINGLE_SESSION) already kicked the others out: it ends as a kickout would.
      conn.oneway('kickout', {});
      conn.close(KICKED_OUT, config.kickoutCloseMs);
      return { ok: false };
    }
    if (config.singleSession && !conn.closed) {
      // Closes the sessions of the user that logged in before this one, on every node; one that
      // logged in after it (at the same moment on another node) stays, and its kickout closes this one.
      const except = { node: login.node, conn: login.conn };
      this.services.bus.publish({ type: 'kickout', pid: req.pid, uid: req.uid, except, loginAt: login.at });
      // For a node cut off from the bus now (not awaited: the login does not wait for it).
      void keepKickout(this.services, { pid: req.pid, uid: req.uid, at: BigInt(login.at) });
    }
    this.log.debug({ pid: req.pid, uid: String(req.uid), conn: conn.id }, 'login');
    return { ok: true };
  }

  /** Why a `gettoken` token is refused, or undefined when it is the user's token. */
  private async refuseStoredToken(req: { pid: number; uid: bigint; token: string }): Promise<string | undefined> {
    const token = await this.services.store.getToken(req.pid, req.uid);
    if (!token) return 'the user has no token (gettoken)';
    return sameSecret(req.token, token) ? undefined : 'not the token gettoken gave';
  }

  /** Why an auth v2 token (`authv: 2`, `ts`) is refused, or undefined when it is good. */
  private refuseV2Token(hmacSecret: string | undefined, req: { pid: number; uid: bigint; token: string; ts?: bigint }): string | undefined {
    if (!hmacSecret) return 'auth v2 token, but the project has no hmacSecret';
    if (req.ts === undefined) return "auth v2 token without 'ts'";
    const { hmacTokenTtlSeconds, signWindowSeconds } = this.services.config;
    const expected = hmacToken(hmacSecret, req.pid, req.uid, req.ts);
    return refuseHmacToken(req.token, expected, req.ts, Math.floor(Date.now() / 1000), hmacTokenTtlSeconds, signWindowSeconds);
  }

  /**
   * Connections that said `bye`: the presence is over (logout time recorded, rooms left, listeners
   * told) while the socket stays open a moment, so quests sent behind `bye` must not act as the user.
   */
  private readonly loggedOut = new WeakSet<Connection<ClientSession>>();

  /**
   * `which`, the dispatch step of older SDKs (Android, objc, C#, Unity 2.x): they ask a dispatch
   * service `which {what: 'rtmGated'[@cluster], addrType, proto}` for a client gate, connect to the
   * `endpoint` it answers, and log in there. Given this gate as their dispatch endpoint, they are
   * sent to this node's client gate (RTM_CLIENT_ENDPOINT), which serves TCP and WebSocket alike.
   */
  private which(payload: Payload): Payload {
    const what = payload['what'];
    if (typeof what !== 'string' || !/^rtmGated(@|$)/.test(what)) {
      throw new RtmError(RtmErrorCode.INVALID_PARAMETER, `which: only 'rtmGated' is dispatched here, got ${JSON.stringify(what)}`);
    }
    return { endpoint: this.services.clientEndpoint() };
  }

  /** `bye`: answer, then close (the SDK also closes when the answer arrives). */
  private bye(conn: Connection<ClientSession>): Payload {
    this.loggedOut.add(conn);
    this.services.sessions.logout(conn as ClientContext['conn'], true);
    setTimeout(() => conn.close('bye'), 50).unref();
    return {};
  }

  protected knows(method: string): boolean {
    return method === 'auth' || method === 'which' || method === 'bye' || Object.hasOwn(this.methods, method);
  }

  /**
   * A connection gets `RTM_IDLE_TIMEOUT_MS` to log in: one that only sends `*ping` (or `which`)
   * would otherwise hold its socket for ever without anyone knowing who it is.
   */
  protected override loginOverdue(conn: Connection<ClientSession>, now: number): boolean {
    return conn.session === undefined && now - conn.openedAt > this.options.idleTimeoutMs;
  }

  protected shouldPing(conn: Connection<ClientSession>): boolean {
    return conn.session !== undefined && !conn.holdingPushes;
  }

  protected closed(conn: Connection<ClientSession>, reason: string): void {
    this.services.sessions.logout(conn as ClientContext['conn'], reason === KICKED_OUT);
  }

  override async stop(graceMs?: number): Promise<void> {
    clearInterval(this.sweepTimer);
    await super.stop(graceMs);
  }
}
