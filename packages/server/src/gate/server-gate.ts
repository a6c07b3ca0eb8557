import { FpnnErrorCode, RtmError, RtmErrorCode, type IncomingQuest, type Payload } from '@rtm/fpnn';
import { invoke, type MethodTable, type ServerContext } from '../methods/method.js';
import type { Services } from '../services/index.js';
import { emptyListen, type ServerSession } from '../services/listen.js';
import type { Connection } from './connection.js';
import { Gate, type GateOptions } from './gate.js';
import { RateLimiter } from './rate-limit.js';
import type { SignatureVerifier } from './signature.js';
import { transportLabel, withoutPort } from '../transport/transport.js';

/** How often a peer address's refused signatures over HTTP are logged at warn (the others at debug). */
const HTTP_AUTH_WARN_EVERY_MS = 60_000;
/** Refusals of a quest's signature (pid, sign, ts, replay): logged, unlike other error answers. */
const AUTH_FAILURES: ReadonlySet<number> = new Set([
  RtmErrorCode.INVALID_PROJECT_ID_OR_SIGN,
  RtmErrorCode.INVALID_SERFVER_TIME,
  RtmErrorCode.SAME_SIGN,
]);

/**
 * The server gate (server-api.md): backends, every quest signed on its own, no login.
 * Also answers FPNN-over-HTTP calls (stateless: listen methods need a connection).
 */
export class ServerGate extends Gate<ServerSession> {
  /** Calls per second per project (errors-and-limits.md §3), over TCP and HTTP alike; a second's worth may come at once. */
  private readonly limiter: RateLimiter;

  constructor(
    options: GateOptions,
    private readonly services: Services,
    private readonly methods: MethodTable<ServerContext>,
    private readonly signatures: SignatureVerifier,
  ) {
    super(options);
    const rate = services.config.serverCallsPerSecond;
    this.limiter = new RateLimiter(rate, Math.max(1, rate));
  }

  protected serve(conn: Connection<ServerSession>, quest: IncomingQuest): Payload | Promise<Payload> {
    return this.call(quest.method, quest.payload, conn, conn.remote);
  }

  private call(method: string, payload: Payload, conn: Connection<ServerSession> | undefined, remote: string): Payload | Promise<Payload> {
    const def = this.methods[method];
    if (!def || !Object.hasOwn(this.methods, method)) throw new RtmError(FpnnErrorCode.CORE_UNKNOWN_METHOD, `unknown method '${method}'`);
    let pid: number;
    try {
      pid = this.signatures.verify(method, payload, this.admit);
    } catch (err) {
      if (err instanceof RtmError && AUTH_FAILURES.has(err.code)) this.authFailed(conn, remote, method, payload, err);
      throw err;
    }
    if (conn && !conn.session) conn.session = { pid, listen: emptyListen(), listened: false };
    if (conn && conn.session!.pid !== pid) {
      // One connection serves one project: listen state and pushes are per project.
      throw new RtmError(FpnnErrorCode.CORE_FORBIDDEN, `this connection already serves project ${conn.session!.pid}`);
    }
    return invoke(def, { pid, services: this.services, conn: conn as ServerContext['conn'] }, payload);
  }

  /** Connections whose first refused signature was logged at warn. */
  private readonly authWarned = new WeakSet<Connection<ServerSession>>();
  /**
   * Over HTTP, when each peer address (without its port: a backend without keep-alive comes from a
   * new port every call) last had a refused signature logged at warn: once a minute at most.
   */
  private readonly authWarnedHttp = new Map<string, number>();

  /**
   * A refused signature: a backend with a wrong secret, pid or clock must show in the logs, once
   * per connection at warn (further ones at debug, a retrying backend would flood the log). The
   * reason and the peer, never the secret or the sign.
   */
  private authFailed(conn: Connection<ServerSession> | undefined, remote: string, method: string, payload: Payload, err: RtmError): void {
    let first: boolean;
    if (conn) {
      first = !this.authWarned.has(conn);
      this.authWarned.add(conn);
    } else {
      const address = withoutPort(remote);
      const now = Date.now();
      const warnedAt = this.authWarnedHttp.get(address);
      first = warnedAt === undefined || now - warnedAt >= HTTP_AUTH_WARN_EVERY_MS;
      if (first) {
        if (this.authWarnedHttp.size >= 10_000) this.authWarnedHttp.clear(); // bounded: peers may be many
        this.authWarnedHttp.set(address, now);
      }
    }
    const pid = typeof payload.pid === 'number' || typeof payload.pid === 'bigint' ? String(payload.pid) : undefined;
    const fields = {
      conn: conn?.id,
      remote,
      transport: conn ? transportLabel(conn.transport) : 'http',
      method,
      pid,
      code: err.code,
      reason: err.message,
    };
    if (first) this.log.warn(fields, 'server-gate authentication failed');
    else this.log.debug(fields, 'server-gate authentication failed');
  }

  private readonly admit = (pid: number): void => {
    if (this.limiter.take(String(pid))) return;
    throw new RtmError(
      RtmErrorCode.API_FREQUENCY_LIMITED,
      `too many calls: the limit is ${this.services.config.serverCallsPerSecond}/s per project`,
    );
  };

  /** One FPNN-over-HTTP call (spec/fpnn.md §7). */
  handleHttp = async (method: string, payload: Payload, remote: string): Promise<{ ok: boolean; payload: Payload }> => {
    const started = performance.now();
    let outcome = 'ok';
    this.begin(); // a graceful stop waits for HTTP quests as for the others
    try {
      if (this.stopping) throw new RtmError(FpnnErrorCode.CORE_SERVER_STOPPING, 'server is shutting down');
      if (method === '*ping') return { ok: true, payload: { ts: BigInt(Date.now()) } };
      if (this.isBuiltin(method)) return { ok: true, payload: this.builtin(method, remote) };
      // Replays are told by the decoded payload, so a quest signed for TCP is one over HTTP too.
      const mark = this.options.published?.sentMark();
      const answer = await this.call(method, payload, undefined, remote);
      return { ok: true, payload: (await this.ordered(mark, answer)) ?? answer };
    } catch (err) {
      const e = err instanceof RtmError ? err : undefined;
      if (!e) this.internalError(err, method, { remote }, 'HTTP handler failed');
      outcome = e ? String(e.code) : 'internal';
      return { ok: false, payload: e ? e.toAnswer() : { code: FpnnErrorCode.CORE_UNKNOWN_ERROR, ex: 'internal server error' } };
    } finally {
      this.done(method, outcome, started);
    }
  };

  protected knows(method: string): boolean {
    return Object.hasOwn(this.methods, method);
  }

  /**
   * Only connections that listen (`ServerSession.listened`). The others have nothing pushed to them
   * and are closed once idle for RTM_IDLE_TIMEOUT_MS; their SDKs connect again (Node, Go and
   * Python at once, Java at its next call, PHP never; ours keeps itself alive with `*ping`).
   */
  protected shouldPing(conn: Connection<ServerSession>): boolean {
    return conn.session?.listened === true;
  }

  protected closed(conn: Connection<ServerSession>): void {
    this.services.listeners.remove(conn);
  }
}
