import { createServer as createHttpServer, type IncomingMessage, type Server as HttpServer, type ServerResponse } from 'node:http';
import { createServer as createNetServer, type BlockList, type Server as NetServer, type Socket } from 'node:net';
import { createServer as createTlsServer, type Server as TlsServer, type TLSSocket } from 'node:tls';
import { WebSocketServer, type WebSocket } from 'ws';
import { hasBody, serveHttpQuest, type HttpQuestHandler, type HttpRefusal } from './http.js';
import { LimitRefusal, type ConnectionLimits, type ConnectionSlot } from './connection-limits.js';
import { parseProxyHeader } from './proxy-protocol.js';
import { TcpTransport } from './tcp.js';
import type { TlsCredentials } from './tls-credentials.js';
import { withoutPort, type Transport } from './transport.js';
import { WebSocketTransport } from './websocket.js';

export interface ListenerOptions {
  host: string;
  port: number;
  /** A new FPNN connection (TCP or WebSocket). */
  onTransport(transport: Transport): void;
  /**
   * One FPNN-over-HTTP call, or the refusal every call gets (its body unread); undefined = HTTP
   * quests are refused with 404.
   */
  onHttpQuest?: HttpQuestHandler | HttpRefusal;
  /**
   * A connection was refused (not FPNN at all, or over `limits`): `reason` is short and fixed (a
   * label), `detail` says more.
   */
  onRefused?(remote: string, reason: string, detail?: string): void;
  maxFrameBytes: number;
  /** A connection that sends fewer than 4 bytes within this time is closed (it cannot be classified). */
  sniffTimeoutMs: number;
  /**
   * An HTTP connection is closed unless each request arrives whole (headers and body) within this
   * time of the connection being handed over or of the previous answer: a request trickled a byte at
   * a time would otherwise hold its socket, and what it sent of a body, for ever.
   */
  httpRequestTimeoutMs: number;
  /**
   * Speak TLS: every connection completes a handshake (within `sniffTimeoutMs`) before its first
   * bytes choose the protocol, as on a plain port. `setCredentials` replaces the credentials.
   */
  tls?: {
    credentials: TlsCredentials;
    /** A handshake failed or timed out (the peer speaks no TLS, distrusts the certificate, is gone…). */
    onHandshakeFailed?(remote: string, reason: string): void;
  };
  /**
   * Balancers whose connections start with a PROXY protocol header (v1 or v2), which must come
   * within `sniffTimeoutMs`: the client it names is the connection's peer (`remote` of its
   * transport, of HTTP calls and of the refusals); a connection without one is closed.
   */
  proxyFrom?: BlockList;
  /**
   * Connection limits, shared by the listeners of one gate: every connection takes a slot as it is
   * accepted, whatever it turns out to speak, and gives it back when its socket closes. Over a
   * limit it is closed at once, before anything is read from it (over the per-address one, right
   * after its PROXY header when it comes from `proxyFrom`), and refused through `onRefused`.
   */
  limits?: ConnectionLimits;
}

const SNIFF_BYTES = 4;
const EMPTY = Buffer.alloc(0);

/** Where an accepted socket keeps its place in the connection limits. */
const SLOT = Symbol('connection slot');
type SlotHolder = Socket & { [SLOT]?: ConnectionSlot };

/** The 'close' listener of every socket holding a slot: gives it back (once: `release`). */
function releaseSlot(this: SlotHolder): void {
  this[SLOT]?.release();
}

/**
 * One port, three protocols (DESIGN.md "Processes and ports"): the first bytes of a connection
 * choose. `FPNN` → FPNN over TCP; anything that looks like HTTP → node's HTTP server, which
 * upgrades `GET` to WebSocket and serves `POST /service/<method>`. With `tls`, the same after a TLS
 * handshake (wss://, and FPNN over TLS).
 */
export class Listener {
  private readonly net: NetServer;
  /** With `tls`: handed each connection (after its PROXY header); it never listens itself. */
  private readonly tlsServer: TlsServer | undefined;
  /** Clients named by PROXY headers, by the connection's own "address:port" (the balancer's side). */
  private readonly proxied = new Map<string, string>();
  /** TLS: raw connections whose handshake is under way, by "address:port" (closed at a stop). */
  private readonly handshaking = new Map<string, Socket>();
  private readonly http: HttpServer;
  private readonly wss: WebSocketServer;
  private readonly sockets = new Set<Socket>();
  /** Those of `sockets` that have not sent the bytes telling FPNN from HTTP yet. */
  private readonly sniffing = new Set<Socket>();
  /** The deadline of each of `sniffing`: destroyed unless it has said enough by then. */
  private readonly sniffDeadlines = new Map<Socket, NodeJS.Timeout>();
  /**
   * The 'close' listener of every socket held (`holdUntilHeard`), `this` being the socket: one
   * function for all of them. A closure per socket would live as long as the connection, and
   * with it the scope it was made in (what the socket sent first, its timers).
   */
  private readonly forgetOnClose: (this: Socket) => void;
  /**
   * Those of `sockets` handed to the HTTP server (bridge calls, WebSocket upgrades). It never
   * listens itself, so it does not track them: `closeIdleConnections` would not find them.
   */
  private readonly httpSockets = new Set<Socket>();
  /**
   * The deadline of the request each of `httpSockets` is sending (see `httpRequestTimeoutMs`).
   * Kept here: node's own headersTimeout and requestTimeout are checked by a timer that only a
   * listening HTTP server starts, and this one never listens.
   */
  private readonly httpDeadlines = new Map<Socket, NodeJS.Timeout>();
  /** HTTP sockets with responses not yet finished, and how many (pipelined requests queue theirs). */
  private readonly unanswered = new Map<Socket, number>();

  constructor(private readonly options: ListenerOptions) {
    const forget = (socket: Socket): void => this.forget(socket);
    this.forgetOnClose = function (this: Socket): void {
      forget(this);
    };
    this.wss = new WebSocketServer({
      noServer: true,
      // Every WebSocket's socket is in `sockets` already (destroyed at a stop); ws's own set of
      // clients would cost a close closure per connection.
      clientTracking: false,
      maxPayload: options.maxFrameBytes,
      // Echo a requested sub-protocol (WeChat mini-programs ask for 'arraybuffer').
      handleProtocols: (protocols) => protocols.values().next().value ?? false,
      perMessageDeflate: false,
      // Text messages carry FPNN frames too, binary headers and all (websocket.ts).
      skipUTF8Validation: true,
    });
    this.http = createHttpServer({ keepAliveTimeout: 60_000 }, (req, res) => {
      this.requestArrived(req, res);
      if (!options.onHttpQuest) {
        res.writeHead(404).end();
        return;
      }
      // It answers every error itself; should anything still escape, drop the request, not the process.
      serveHttpQuest(req, res, options.onHttpQuest, this.remoteOf(req.socket), options.maxFrameBytes).catch(() => res.destroy());
    });
    this.http.on('upgrade', (req: IncomingMessage, socket, head) => {
      // Pipelined behind a request still being answered: that answer would land inside the
      // WebSocket stream. No client does this; refused.
      if (this.unanswered.has(req.socket)) return void socket.destroy();
      // The reference accepts any path; we accept /service/websocket and, leniently, any other.
      const remote = this.remoteOf(req.socket);
      // A WebSocket from here on: the gate's idle timeout watches it, not the HTTP deadlines.
      this.httpSockets.delete(req.socket);
      this.clearHttpDeadline(req.socket);
      this.wss.handleUpgrade(req, socket, head, (ws) => this.acceptWebSocket(ws, remote));
    });
    this.http.on('clientError', (_err, socket) => socket.destroy());
    this.tlsServer = options.tls && this.createTlsServer(options.tls);
    this.net = createNetServer({ pauseOnConnect: false }, (socket) => this.accept(socket));
  }

  /** The peer of `socket` as the gates know it: the client a PROXY header named, else the socket's own. */
  private remoteOf(socket: Socket): string {
    const own = addressOf(socket);
    return this.proxied.get(own) ?? own;
  }

  /**
   * A new TCP connection: a slot within the limits, then its PROXY header first when it comes from
   * a balancer that sends one.
   */
  private accept(raw: Socket): void {
    const { limits, proxyFrom: from } = this.options;
    let slot: ConnectionSlot | undefined;
    if (limits) {
      slot = limits.admit();
      if (!slot) return this.refuse(raw, addressOf(raw), LimitRefusal.total);
      // Every way a connection ends destroys its socket in the end (TLS ones too, and sockets
      // handed to the HTTP server or to ws): one place gives the slot back. One listener shared by
      // every socket, the slot on the socket: a closure and `once`'s wrapper per connection
      // cost 0.46 KiB of each idle connection's ~9 (bench/memory.ts).
      (raw as SlotHolder)[SLOT] = slot;
      raw.on('close', releaseSlot);
    }
    if (from && raw.remoteAddress && from.check(raw.remoteAddress, raw.remoteFamily === 'IPv6' ? 'ipv6' : 'ipv4'))
      this.readProxyHeader(raw, slot);
    else if (slot && raw.remoteAddress !== undefined && !slot.claim(raw.remoteAddress))
      this.refuse(raw, addressOf(raw), LimitRefusal.perAddress);
    else this.afterProxyHeader(raw);
  }

  /**
   * Closes a connection over a limit at once: nothing read, no TLS handshake, no HTTP answer. A
   * 503 would need the request read first (and on the TLS port a handshake, ~1.3 ms of CPU): work
   * and memory spent on the very connections a limit is there to turn away. A WebSocket client
   * sees its handshake fail (browsers show any failed one as close code 1006 alike).
   */
  private refuse(raw: Socket, remote: string, reason: LimitRefusal): void {
    raw.destroy();
    this.options.onRefused?.(remote, reason);
  }

  /** Then the TLS handshake if this port speaks TLS, and the first bytes that choose the protocol. */
  private afterProxyHeader(raw: Socket): void {
    if (!this.tlsServer) {
      this.sniff(raw);
      raw.resume(); // paused by readProxyHeader, if it ran
      return;
    }
    const own = addressOf(raw);
    this.handshaking.set(own, raw);
    raw.once('close', () => {
      if (this.handshaking.get(own) === raw) this.handshaking.delete(own);
    });
    this.tlsServer.emit('connection', raw);
  }

  /**
   * Reads the PROXY header, within the sniff timeout (a balancer sends it at once), then goes on
   * with what follows it. A connection from the balancer without a valid header is closed: its
   * peer would otherwise be taken for the balancer.
   */
  private readProxyHeader(raw: Socket, slot: ConnectionSlot | undefined): void {
    const own = addressOf(raw);
    this.holdUntilHeard(raw);
    let head: Buffer = EMPTY;
    const onData = (chunk: Buffer): void => {
      head = head.length === 0 ? chunk : Buffer.concat([head, chunk]);
      let parsed;
      try {
        parsed = parseProxyHeader(head);
      } catch (err) {
        this.options.onRefused?.(own, 'bad PROXY header', `from a PROXY protocol source: ${(err as Error).message}`);
        raw.destroy();
        return;
      }
      if (!parsed) return;
      this.heard(raw);
      raw.off('data', onData);
      raw.pause();
      if (parsed.header.kind === 'proxied') this.proxied.set(own, parsed.header.remote);
      // The client the header names is the one counted (a LOCAL header: the balancer itself).
      const client = parsed.header.kind === 'proxied' ? withoutPort(parsed.header.remote) : raw.remoteAddress;
      if (slot && client !== undefined && !slot.claim(client)) return this.refuse(raw, this.remoteOf(raw), LimitRefusal.perAddress);
      if (head.length > parsed.length) raw.unshift(head.subarray(parsed.length));
      this.afterProxyHeader(raw);
    };
    raw.on('data', onData);
  }

  private createTlsServer(tls: NonNullable<ListenerOptions['tls']>): TlsServer {
    const { cert, key } = tls.credentials;
    // The handshake gets the time a plain connection has to send its first bytes; then sniff()'s
    // own deadline starts.
    const server = createTlsServer({ cert, key, handshakeTimeout: this.options.sniffTimeoutMs }, (socket) => {
      this.handshaking.delete(addressOf(socket));
      this.sniff(socket);
    });
    server.on('tlsClientError', (err: NodeJS.ErrnoException, socket: TLSSocket) => {
      // A client that reset has taken the TLS socket's handle, and its address with it; the TCP
      // socket under it keeps the address afterProxyHeader read.
      const raw = (socket as TLSSocket & { _parent?: Socket })._parent ?? socket;
      const own = addressOf(raw);
      const remote = this.remoteOf(raw);
      // With a listener for this event node leaves the socket open (a handshake timeout too).
      socket.destroy();
      this.handshaking.delete(own);
      tls.onHandshakeFailed?.(remote, handshakeFailure(err));
    });
    return server;
  }

  /** TLS: the certificate and key of the handshakes from now on; connections made keep theirs. */
  setCredentials(credentials: TlsCredentials): void {
    if (!this.tlsServer) throw new Error('setCredentials: this listener does not speak TLS');
    this.tlsServer.setSecureContext({ cert: credentials.cert, key: credentials.key });
  }

  // Separate from the upgrade handler so no closure of a live connection keeps the request alive.
  private acceptWebSocket(ws: WebSocket, remote: string): void {
    this.options.onTransport(new WebSocketTransport(ws, remote, this.options.tls !== undefined));
  }

  /**
   * Holds `socket` as one that has not said enough yet: destroyed after `sniffTimeoutMs`, or at a
   * stop (`closeIdle`), until `heard`; forgotten (`forget`) when it closes. Called again for the
   * same socket (after its PROXY header), it sets a new deadline.
   */
  private holdUntilHeard(socket: Socket): void {
    if (!this.sockets.has(socket)) {
      this.sockets.add(socket);
      socket.on('close', this.forgetOnClose);
      socket.on('error', destroyOnError);
    }
    this.sniffing.add(socket);
    const deadline = setTimeout(() => socket.destroy(), this.options.sniffTimeoutMs);
    deadline.unref();
    this.sniffDeadlines.set(socket, deadline);
  }

  /** `socket` has said enough: no deadline any more, nor destroyed as one that said nothing at a stop. */
  private heard(socket: Socket): void {
    clearTimeout(this.sniffDeadlines.get(socket));
    this.sniffDeadlines.delete(socket);
    this.sniffing.delete(socket);
  }

  /**
   * A socket held closed: nothing of it stays. A socket gone before its first bytes (a TCP health
   * check, a scanner) would otherwise stay held by its deadline, ~1.7 KB each, for the whole sniff
   * timeout (RTM_IDLE_TIMEOUT_MS, up to 1 h). Each step is a no-op for a socket it does not concern.
   */
  private forget(socket: Socket): void {
    this.heard(socket);
    this.sockets.delete(socket);
    this.httpSockets.delete(socket);
    this.unanswered.delete(socket);
    this.clearHttpDeadline(socket);
    // A balancer's connection: the client its PROXY header named (the socket's own address is
    // known by then: node keeps it once read, as readProxyHeader did).
    this.proxied.delete(addressOf(socket));
  }

  private sniff(socket: Socket): void {
    this.holdUntilHeard(socket);
    let head: Buffer = EMPTY;
    const onData = (chunk: Buffer): void => {
      head = head.length === 0 ? chunk : Buffer.concat([head, chunk]);
      if (head.length < SNIFF_BYTES) return;
      this.heard(socket);
      socket.off('data', onData);
      socket.pause();
      if (head[0] === 0x46 && head[1] === 0x50 && head[2] === 0x4e && head[3] === 0x4e) {
        this.options.onTransport(new TcpTransport(socket, this.remoteOf(socket), head, this.options.tls !== undefined));
      } else if (/^[A-Z]{3}[A-Z ]$/.test(head.subarray(0, SNIFF_BYTES).toString('latin1'))) {
        // GET, POST, OPTIONS, …: an HTTP request (WebSocket upgrade or FPNN-over-HTTP).
        socket.unshift(head);
        this.httpSockets.add(socket);
        this.armHttpDeadline(socket);
        this.http.emit('connection', socket);
        socket.resume();
      } else {
        // A TLS ClientHello (handshake record, version 3.x): a wss:// or TLS client on a plain port.
        const tls = head[0] === 0x16 && head[1] === 0x03;
        this.options.onRefused?.(this.remoteOf(socket), tls ? 'TLS on a plain port' : 'neither FPNN nor HTTP');
        socket.destroy();
      }
    };
    socket.on('data', onData);
  }

  private armHttpDeadline(socket: Socket): void {
    clearTimeout(this.httpDeadlines.get(socket));
    const timer = setTimeout(() => socket.destroy(), this.options.httpRequestTimeoutMs);
    timer.unref();
    this.httpDeadlines.set(socket, timer);
  }

  private clearHttpDeadline(socket: Socket): void {
    const timer = this.httpDeadlines.get(socket);
    if (timer === undefined) return;
    clearTimeout(timer);
    this.httpDeadlines.delete(socket);
  }

  /**
   * A request's headers are in. Its deadline ends once it is whole (a body to its end), not while
   * it is served: a slow store is not the peer's doing. The next request's starts at the answer.
   */
  private requestArrived(req: IncomingMessage, res: ServerResponse): void {
    const socket = req.socket;
    const earlier = this.unanswered.get(socket) ?? 0;
    this.unanswered.set(socket, earlier + 1);
    res.once('close', () => {
      const left = (this.unanswered.get(socket) ?? 1) - 1;
      if (left > 0) this.unanswered.set(socket, left);
      else this.unanswered.delete(socket);
    });
    if (earlier > 0) {
      // Pipelined behind an answer not yet written out. A peer that sends and never reads stalls
      // those answers (its socket fills up) and no later event would end it: the deadline runs.
      this.armHttpDeadline(socket);
    } else if (!hasBody(req)) this.clearHttpDeadline(socket);
    else {
      // An unread body (a refusal, a 404) is drained by node after the answer: then it ends the
      // next request's deadline, which must stay.
      req.once('end', () => {
        if (!res.writableFinished) this.clearHttpDeadline(socket);
      });
    }
    res.once('finish', () => {
      if (!socket.destroyed && this.httpSockets.has(socket)) this.armHttpDeadline(socket);
    });
  }

  async listen(): Promise<number> {
    await new Promise<void>((resolve, reject) => {
      this.net.once('error', reject);
      this.net.listen(this.options.port, this.options.host, () => {
        this.net.off('error', reject);
        resolve();
      });
    });
    const address = this.net.address();
    return typeof address === 'object' && address ? address.port : this.options.port;
  }

  /** Stops accepting new connections; resolves once every existing socket has closed too. */
  stopAccepting(): Promise<void> {
    return new Promise<void>((resolve) => this.net.close(() => resolve()));
  }

  /**
   * At a stop, once the gates are done (no quest is under way, WebSocket connections are closed):
   * ends the connections left — sockets that have not said which protocol they speak yet, HTTP
   * keep-alive connections (ended after what is written to them) — so that `stopAccepting`
   * resolves at once instead of after their timeouts.
   */
  closeIdle(): void {
    for (const s of this.handshaking.values()) s.destroy();
    for (const s of this.sniffing) s.destroy();
    for (const s of this.httpSockets) s.end();
  }

  /** Destroys every socket still open (last step of shutdown). */
  destroyAll(): void {
    for (const s of this.handshaking.values()) s.destroy();
    for (const s of this.sockets) s.destroy();
    this.http.closeAllConnections();
  }
}

const addressOf = (socket: Socket): string => `${socket.remoteAddress}:${socket.remotePort}`;

/** The 'error' listener of every socket held: an error ends it ('close' follows). */
function destroyOnError(this: Socket): void {
  this.destroy();
}

/** What a failed handshake says, for the log: OpenSSL's reason where there is one, else node's code. */
function handshakeFailure(err: NodeJS.ErrnoException & { reason?: string }): string {
  if (err.code === 'ERR_TLS_HANDSHAKE_TIMEOUT') return 'handshake timeout';
  if (err.code === 'ECONNRESET') return 'closed during the handshake';
  return err.reason ?? err.code ?? err.message;
}
