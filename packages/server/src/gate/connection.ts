import {
  encodeQuestFrame,
  Flag,
  FpnnPeer,
  FpnnProtocolError,
  FrameDecoder,
  patchSeq,
  type Frame,
  type IncomingQuest,
  type Payload,
  type QuestFrame,
} from '@rtm/fpnn';
import { decodeKeyQuestPayload } from '@rtm/fpnn/crypto';
import { coarseNow } from './coarse-clock.js';
import { UnansweredPushes } from './unanswered-pushes.js';
import type { Logger } from '../observability/logger.js';
import type { Transport } from '../transport/transport.js';

/** A push encoded once and written to many connections; only the seq differs (DESIGN.md). */
export class PreparedPush {
  /** The twoway quest frame with seq 0; each connection writes a copy with its own seq. */
  readonly template: Uint8Array;
  constructor(
    readonly method: string,
    payload: Payload,
  ) {
    this.template = encodeQuestFrame(method, payload, Flag.MSGPACK, false, 0);
  }
}

/**
 * Transforms the byte streams of an encrypted TCP connection (spec/fpnn.md §6). Installed by the
 * `*key` handler; `decrypt` returns whole plaintext frames or plaintext stream bytes.
 */
export interface ConnectionCipher {
  encrypt(frame: Uint8Array): Uint8Array;
  decrypt(chunk: Uint8Array): Uint8Array[];
  /** Received bytes of a package not yet complete (package mode; 0 in stream mode). */
  readonly bufferedBytes: number;
  /** The largest package accepted from now on (package mode buffers a whole one before the decoder sees its header). */
  limitFrameBytes(max: number): void;
}

export interface ConnectionHooks<Session = unknown> {
  /** A quest from the peer (never `*ping`, which the connection answers itself). */
  onQuest(conn: Connection<Session>, quest: IncomingQuest): Payload | Promise<Payload> | void | Promise<void>;
  /** `*key` (first quest on TCP only); returns the cipher to install, or throws to close. */
  onKeyExchange?(conn: Connection<Session>, payload: Payload): ConnectionCipher;
  onClose(conn: Connection<Session>, reason: string): void;
  onInternalError(conn: Connection<Session>, err: unknown, quest: IncomingQuest): void;
  onBytesIn?(n: number): void;
  onBytesOut?(n: number): void;
}

export interface ConnectionOptions {
  maxFrameBytes: number;
  /**
   * Largest frame until `liftFrameLimit()` (the client gate: until a login): a peer nobody knows
   * may not make the server buffer and decode frames of `maxFrameBytes` (seconds of decoding and
   * hundreds of MB for 8 MiB of tiny msgpack maps). @default maxFrameBytes
   */
  maxFrameBytesBeforeLift?: number;
  /**
   * Quests accepted until `liftFrameLimit()`, `*ping` aside (answered here, as cheaply as it can
   * be, and what round-trip benchmarks send without a login); one more closes the connection as a
   * protocol error. Refusing a quest is cheap but not free (~5 µs: an error, an answer), and node
   * reads up to 2 MB from one socket per event-loop turn: a peer nobody knows pipelining refused
   * quests stalled every other client. @default no limit
   */
  maxQuestsBeforeLift?: number;
  maxOutboundBytes: number;
  pushTimeoutMs: number;
}

let nextConnectionId = 1;

/**
 * One FPNN connection of a gate: decodes frames, answers quests through the gate's handler,
 * sends pushes, and enforces the bounds (frame size, outbound buffer). Knows nothing of users
 * or projects: the gate keeps that in `session`.
 */
export class Connection<Session = unknown> {
  readonly id = nextConnectionId++;
  readonly peer: FpnnPeer;
  /** Gate-specific state (client gate: the logged-in user; server gate: listen state). */
  session: Session | undefined;
  /** ms of the last complete frame in either direction (idle detection). */
  lastActivity = coarseNow();
  /** ms of the last frame written. */
  lastWrite = coarseNow();
  /** Whether the peer has sent one complete frame yet (it speaks FPNN, not merely opened a socket). */
  heard = false;
  /** When `unfinishedSince` first saw bytes of an unfinished frame; undefined while none are held. */
  private unfinishedSeen: number | undefined;
  readonly openedAt = Date.now();
  private decoder: FrameDecoder;
  private cipher: ConnectionCipher | undefined;
  private questsSeen = 0;
  /** Quests accepted in all, `*ping` aside (`maxQuestsBeforeLift` until the lift), and those counted. */
  private questLimit: number;
  private questsCounted = 0;
  private closedReason: string | undefined;
  /** Pushes waiting for `releasePushes()`; undefined while pushes go straight out. */
  private held: (() => void)[] | undefined;
  /** Holds not released yet (`holdPushes`). */
  private holds = 0;
  /** Pushes of unread-counting messages not answered yet; created by the first one. */
  private unanswered: UnansweredPushes | undefined;

  constructor(
    readonly transport: Transport,
    private readonly hooks: ConnectionHooks<Session>,
    private readonly options: ConnectionOptions,
    readonly log: Logger,
  ) {
    this.decoder = new FrameDecoder(Math.min(options.maxFrameBytes, options.maxFrameBytesBeforeLift ?? Infinity));
    this.questLimit = options.maxQuestsBeforeLift ?? Infinity;
    // A WebSocket message holds one frame (the SDKs send one each): the same bound, applied as it arrives.
    if (this.decoder.maxFrameBytes < options.maxFrameBytes) transport.limitMessageBytes(this.decoder.maxFrameBytes);
    // The connection is the peer's options and the transport's listener itself: its methods, not
    // closures per connection (memory per idle connection counts at 10k+ connections).
    this.peer = new FpnnPeer(this);
    transport.start(this);
  }

  // --- PeerOptions (FpnnPeer calls these as methods of this object) ---------------------------------
  /** @internal */
  get questTimeoutMs(): number {
    return this.options.pushTimeoutMs;
  }

  /** @internal The gate's keepalive timer expires pending quests of every connection. */
  readonly externalExpiry = true;

  /** @internal */
  onQuest(quest: IncomingQuest): Payload | Promise<Payload> | void | Promise<void> {
    return this.hooks.onQuest(this, quest);
  }

  /** @internal */
  onInternalError(err: unknown, quest: IncomingQuest): void {
    this.hooks.onInternalError(this, err, quest);
  }

  // --- TransportEvents -------------------------------------------------------------------------------
  /** @internal */
  onTransportData(chunk: Uint8Array): void {
    this.onData(chunk);
  }

  /** @internal */
  onTransportReplied(): void {
    if (!this.closedReason) this.withinBound(0);
  }

  /** @internal */
  onTransportClose(): void {
    this.close(this.closedReason ?? 'peer closed');
  }

  /** From now on frames up to `maxFrameBytes`, and any number of quests, are accepted (see `maxFrameBytesBeforeLift`). */
  liftFrameLimit(): void {
    this.questLimit = Infinity;
    if (this.decoder.maxFrameBytes === this.options.maxFrameBytes) return;
    this.decoder.maxFrameBytes = this.options.maxFrameBytes;
    this.transport.limitMessageBytes(this.options.maxFrameBytes);
    this.cipher?.limitFrameBytes(this.options.maxFrameBytes);
  }

  /** The mark (mtime) of the oldest push written with an `unreadMark` that the peer has not answered. */
  get oldestUnanswered(): bigint | undefined {
    return this.unanswered?.oldestMark;
  }

  get closed(): boolean {
    return this.closedReason !== undefined;
  }

  get remote(): string {
    return this.transport.remote;
  }

  private onData(chunk: Uint8Array): void {
    if (this.closedReason) return;
    this.hooks.onBytesIn?.(chunk.length);
    try {
      if (this.cipher) {
        for (const plain of this.cipher.decrypt(chunk)) this.feed(plain);
      } else this.feed(chunk);
    } catch (err) {
      const reason = err instanceof FpnnProtocolError ? err.message : `bad input: ${(err as Error).message}`;
      // From a peer that never logged in or signed a quest (a scanner, a stray client) it is
      // routine: info. From a known user or backend it points at a bug on one side: warn.
      const fields = { conn: this.id, remote: this.remote, authenticated: this.session !== undefined, reason };
      if (this.session === undefined) this.log.info(fields, 'protocol error, closing connection');
      else this.log.warn(fields, 'protocol error, closing connection');
      this.close(`protocol error: ${reason}`);
    }
  }

  private feed(bytes: Uint8Array): void {
    this.decoder.append(bytes);
    for (let frame = this.decoder.next(); frame && !this.closedReason; frame = this.decoder.next()) {
      this.lastActivity = coarseNow();
      this.heard = true;
      this.onFrame(frame);
      if (this.cipher && !this.closedReason && frame.kind === 'quest' && frame.method === '*key') {
        // Bytes after *key in the same read are already ciphertext (spec/fpnn.md §6 step 7).
        const rest = this.decoder.takeBuffered();
        if (rest.length > 0) for (const plain of this.cipher.decrypt(rest)) this.feed(plain);
        return;
      }
    }
  }

  private onFrame(frame: Frame): void {
    if (frame.kind === 'answer') this.unanswered?.answered(frame.seq);
    else {
      const first = this.questsSeen++ === 0;
      if (frame.method === '*ping') {
        if (!frame.oneway) this.peer.writeAnswer(frame.seq, frame.flag, { ts: BigInt(Date.now()) });
        return;
      }
      if (++this.questsCounted > this.questLimit) throw new FpnnProtocolError(`more than ${this.questLimit} quests before a login`);
      if (frame.method === '*key') return this.keyExchange(frame, first);
    }
    this.peer.receive(frame);
  }

  private keyExchange(quest: QuestFrame, first: boolean): void {
    // A oneway `*key` is refused like any other bad key exchange: closed, never answered. Oneway
    // quests are never answered (spec/fpnn.md §3), and this handshake's answer is what confirms
    // it: `*key` is a twoway quest (§6), the one every SDK sends (the Node and Python SDKs wait for
    // its answer before they encrypt). Installing the cipher silently instead would leave both
    // sides guessing whether the connection is encrypted; a protocol error is plain.
    if (!this.hooks.onKeyExchange || this.transport.kind !== 'tcp' || !first || quest.oneway) {
      const why = !this.hooks.onKeyExchange
        ? 'encryption is not configured'
        : this.transport.kind !== 'tcp'
          ? '*key over WebSocket'
          : !first
            ? '*key is only valid as the first quest'
            : 'oneway *key: the key exchange is a twoway quest';
      throw new FpnnProtocolError(why);
    }
    // The reference closes without answering on any failure (spec/fpnn.md §6 step 6).
    // publicKey as msgpack str (the C++ client) is read as its raw bytes, not as text.
    const cipher = this.hooks.onKeyExchange(this, decodeKeyQuestPayload(quest.flag, quest.payload));
    // Before a login, packages are held to the decoder's limit: a package is buffered whole before
    // its frame header is read, so the decoder alone would check it only after it all came.
    cipher.limitFrameBytes(this.decoder.maxFrameBytes);
    this.cipher = cipher;
    // Already encrypted: switch first, then answer.
    this.peer.writeAnswer(quest.seq, quest.flag, {});
  }

  /**
   * Since when (ms, as first seen by a call) the peer has left a frame unfinished, in any layer:
   * the FPNN decoder, the package decryptor, the transport (a WebSocket frame or fragmented
   * message); undefined while no such bytes are held. The keepalive of a gate whose own frames
   * count as activity asks every tick: a started frame must complete within the idle timeout,
   * whatever we write meanwhile (slowloris).
   */
  unfinishedSince(now: number): number | undefined {
    const held = this.decoder.bufferedBytes > 0 || (this.cipher !== undefined && this.cipher.bufferedBytes > 0) || this.transport.receiving;
    if (!held) return (this.unfinishedSeen = undefined);
    return (this.unfinishedSeen ??= now);
  }

  /** Writes one frame, enforcing the outbound bound (a slow consumer is closed, never buffered without limit). */
  write(frame: Uint8Array): void {
    if (this.closedReason || !this.withinBound(frame.length)) return;
    this.lastWrite = coarseNow();
    const bytes = this.cipher ? this.cipher.encrypt(frame) : frame;
    this.hooks.onBytesOut?.(bytes.length);
    this.transport.write(bytes);
  }

  /**
   * From now until `releasePushes()`, pushes wait instead of being written: a login makes the
   * connection a push target before its answer is written, and no push may come first
   * (client-api.md §2); a quest's own message reaches its listening sender after the answer.
   * Holds are counted: pushes go out again when every hold is released.
   */
  holdPushes(): void {
    this.holds++;
    this.held ??= [];
  }

  /** Releases one hold; at the last one, writes the pushes that waited, in order. */
  releasePushes(): void {
    if (this.holds > 0 && --this.holds > 0) return;
    const held = this.held;
    this.held = undefined;
    if (held) for (const push of held) push();
  }

  get holdingPushes(): boolean {
    return this.held !== undefined;
  }

  /**
   * A twoway push whose answer is not awaited (message pushes): late answers are ignored. With
   * `unreadMark` (a message that counts as unread for this connection's user: its mtime), the
   * connection remembers it until answered (`oldestUnanswered`).
   */
  pushPrepared(push: PreparedPush, unreadMark?: bigint): void {
    if (this.closedReason) return;
    if (this.held) {
      this.held.push(() => this.pushPrepared(push, unreadMark));
      return;
    }
    const seq = this.peer.allocSeq();
    if (unreadMark !== undefined) (this.unanswered ??= new UnansweredPushes()).written(seq, unreadMark);
    if (this.cipher) {
      const frame = push.template.slice();
      patchSeq(frame, seq);
      this.write(frame);
      return;
    }
    if (!this.withinBound(push.template.length)) return;
    this.lastWrite = coarseNow();
    this.hooks.onBytesOut?.(this.transport.writeWithSeq(push.template, seq));
  }

  /** false (and the connection closed) when the outbound buffer would go over its bound. */
  private withinBound(adding: number): boolean {
    if (this.transport.bufferedBytes + adding <= this.options.maxOutboundBytes) return true;
    this.log.warn(
      { conn: this.id, remote: this.remote, buffered: this.transport.bufferedBytes, limit: this.options.maxOutboundBytes },
      'slow consumer: outbound buffer over its bound, closing connection',
    );
    this.close('slow consumer');
    return false;
  }

  /** A twoway push whose answer is awaited (e.g. `ping`). */
  quest(method: string, payload: Payload = {}): Promise<Payload> {
    return this.peer.quest(method, payload);
  }

  /** A oneway push (`kickout`, `kickoutroom`). */
  oneway(method: string, payload: Payload = {}): void {
    if (this.held) this.held.push(() => this.peer.oneway(method, payload));
    else this.peer.oneway(method, payload);
  }

  /**
   * Ends the connection: nothing more is read, written or answered on it, and the gate forgets it
   * (`onClose`). The socket closes now, or after `lingerMs` unless the peer closes it first: a
   * kickout leaves the client time to read it and close the socket itself (`kickoutCloseMs`).
   */
  close(reason: string, lingerMs = 0): void {
    if (this.closedReason) return;
    this.holds = 0;
    this.releasePushes(); // a kickout during a login still goes out before the close
    this.closedReason = reason;
    this.peer.close(reason);
    if (lingerMs > 0) setTimeout(closeTransport, lingerMs, this.transport).unref();
    else this.transport.close();
    this.hooks.onClose(this, reason);
  }
}

function closeTransport(transport: Transport): void {
  transport.close(); // a no-op once the peer has closed it
}
