import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { ConfigError } from './config.js';
import type { Logger } from './observability/logger.js';
import type { Metrics } from './observability/metrics.js';
import { RepeatFilter } from './observability/repeats.js';
import type { Listener, ListenerOptions } from './transport/listener.js';
import { daysLeft, loadTlsCredentials, TlsCredentialsError, type TlsCredentials } from './transport/tls-credentials.js';

/** A certificate this close to its end is warned about: at start, at each reload, twice a day. */
export const TLS_EXPIRY_WARN_DAYS = 14;
const EXPIRY_CHECK_EVERY_MS = 12 * 3_600_000;
/** A failed handshake is logged once a minute per reason (scanners fail them all day); all are counted. */
const HANDSHAKE_FAILURE_LOG_EVERY_MS = 60_000;

/** What a reload did: the certificate served from now on, or why the one before stays. */
export type TlsReload =
  { ok: true; subject: string; names: string; notAfter: string; fingerprint256: string } | { ok: false; error: string };

/**
 * The client gate's TLS port as an operator sees it: the certificate and key files read at start
 * (a bad pair refuses the start, naming the file), read again on `reload` (SIGHUP: a renewed
 * certificate is served without a restart, and a bad renewal keeps the one before) and when they
 * change (`watchMs`), its subject and expiry logged and in the metrics, a warning while it is near
 * its end, and failed handshakes counted and logged without flooding the log.
 */
export class ClientTls {
  private credentials: TlsCredentials;
  private listener: Listener | undefined;
  private readonly failures = new RepeatFilter(HANDSHAKE_FAILURE_LOG_EVERY_MS);
  private readonly expiryCheck: NodeJS.Timeout;
  private readonly watch: NodeJS.Timeout | undefined;
  /** The files' state (`filesState`) when last loaded, or when a load of them last failed. */
  private loadedState: string;
  /** A different state seen by the last watch tick: reloaded at the next tick if it has not moved. */
  private changedState: string | undefined;

  /**
   * Throws ConfigError when the files cannot be served. `watchMs` (RTM_TLS_WATCH_MS): how often the
   * files are checked for a change, 0 = never (SIGHUP only).
   */
  constructor(
    private readonly files: { cert: string; key: string },
    private readonly log: Logger,
    private readonly metrics: Metrics,
    watchMs = 0,
    private readonly now: () => number = Date.now,
  ) {
    this.loadedState = filesState(files);
    try {
      this.credentials = loadTlsCredentials(files.cert, files.key);
    } catch (err) {
      if (err instanceof TlsCredentialsError) throw new ConfigError(err.message);
      throw err;
    }
    metrics.servesTls();
    this.expiryCheck = setInterval(() => this.warnIfEnding(), EXPIRY_CHECK_EVERY_MS);
    this.expiryCheck.unref();
    if (watchMs > 0) {
      this.watch = setInterval(() => this.reloadIfChanged(), watchMs);
      this.watch.unref();
    }
  }

  /**
   * A renewal written in place (certbot without a hook, a Kubernetes secret): reloaded once the
   * files have stopped changing for a tick, so that a certificate written before its key is not
   * taken with the old key. A pair that fails is not tried again until the files change again.
   */
  private reloadIfChanged(): void {
    const state = filesState(this.files);
    if (state === this.loadedState) this.changedState = undefined;
    else if (state !== this.changedState) this.changedState = state;
    else {
      this.changedState = undefined;
      this.log.info({ cert: this.files.cert, key: this.files.key }, 'TLS files changed: reloading');
      this.reload(state);
    }
  }

  /** The `tls` option of the listener; `serving` is then told which listener it is. */
  listenerOption(): NonNullable<ListenerOptions['tls']> {
    return {
      credentials: this.credentials,
      onHandshakeFailed: (remote, reason) => {
        this.metrics.tlsHandshakeFailures.inc({ reason });
        const admitted = this.failures.admit(reason);
        if (admitted.log)
          this.log.warn(
            { remote, reason, ...(admitted.repeats > 0 ? { repeats: admitted.repeats } : {}) }, // the log names the gate
            'TLS handshake failed',
          );
      },
    };
  }

  /** The listener is bound: logs the certificate it serves. */
  serving(listener: Listener, port: number): void {
    this.listener = listener;
    this.describe(`client gate TLS port ${port}: serving the certificate`);
  }

  /**
   * Reads the files again; new handshakes get the new certificate, connections made keep theirs.
   * `state`: the files' state when the caller has just read it (the watch).
   */
  reload(state = filesState(this.files)): TlsReload {
    let next: TlsCredentials;
    this.loadedState = state;
    try {
      next = loadTlsCredentials(this.files.cert, this.files.key);
    } catch (err) {
      const error = (err as Error).message;
      this.log.error(
        { error, fingerprint256: this.credentials.fingerprint256 },
        'TLS reload failed: still serving the certificate loaded before',
      );
      return { ok: false, error };
    }
    this.listener?.setCredentials(next);
    this.credentials = next;
    this.describe('TLS certificate reloaded');
    const { subject, names, notAfter, fingerprint256 } = next;
    return { ok: true, subject, names, notAfter: notAfter.toISOString(), fingerprint256 };
  }

  stop(): void {
    clearInterval(this.expiryCheck);
    clearInterval(this.watch);
  }

  private describe(message: string): void {
    const c = this.credentials;
    this.metrics.tlsCertificateExpiry.set(Math.floor(c.notAfter.getTime() / 1000));
    this.log.info(
      {
        subject: c.subject,
        names: c.names,
        notAfter: c.notAfter.toISOString(),
        daysLeft: daysLeft(c, this.now()),
        fingerprint256: c.fingerprint256,
      },
      message,
    );
    if (c.notBefore.getTime() > this.now())
      this.log.warn({ notBefore: c.notBefore.toISOString() }, 'TLS certificate not valid yet: clients refuse it until then');
    this.warnIfEnding();
  }

  private warnIfEnding(): void {
    const c = this.credentials;
    const days = daysLeft(c, this.now());
    if (days >= TLS_EXPIRY_WARN_DAYS) return;
    const fields = { notAfter: c.notAfter.toISOString(), daysLeft: days, cert: this.files.cert };
    if (c.notAfter.getTime() <= this.now()) this.log.error(fields, 'TLS certificate expired: clients refuse it; renew it and send SIGHUP');
    else this.log.warn(fields, `TLS certificate expires within ${TLS_EXPIRY_WARN_DAYS} days: renew it and send SIGHUP`);
  }
}

/**
 * The files' content, hashed: a few KiB read once per check. (Their mtime and size would miss a
 * same-size rewrite within the file system's mtime precision.)
 */
function filesState(files: { cert: string; key: string }): string {
  const hash = createHash('sha256');
  for (const file of [files.cert, files.key]) {
    try {
      hash.update(readFileSync(file));
    } catch {
      hash.update('missing');
    }
    hash.update('\0');
  }
  return hash.digest('base64');
}
