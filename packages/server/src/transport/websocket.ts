import type { Socket } from 'node:net';
import { patchSeq } from '@rtm/fpnn';
import type { WebSocket } from 'ws';
import type { Transport, TransportEvents } from './transport.js';
import { binaryFrameAt, Scan, unmaskInPlace, type FrameBounds } from './websocket-frames.js';

/**
 * FPNN over WebSocket (spec/fpnn.md §5): one FPNN frame per binary message out; incoming messages
 * are treated as a byte stream (copes with split or joined frames). Text messages are taken the
 * same way, as the spec proposes. They are not checked for UTF-8 (the listener's ws skips it): a
 * JSON FPNN frame's header holds binary integers (its length, its seq), so it is seldom valid
 * UTF-8; bytes that are not FPNN close the connection as a protocol error whichever opcode
 * carried them.
 *
 * ws does the handshake, pings, the close handshake and every refusal. Our side writes the
 * outgoing frames (`enqueue`) and reads the usual incoming one, a whole masked binary message
 * (`read`); at the first frame of any other kind, the reads go back to ws for good.
 */
/** ws's `WebSocket.OPEN` (imported as a type only). */
const WS_OPEN = 1;

export class WebSocketTransport implements Transport {
  readonly kind = 'websocket' as const;
  private closed = false;
  private readonly socket: Socket | undefined;
  /**
   * This turn's outgoing frames, written as ONE buffer when the turn ends (see `flush`): FPNN
   * frames to wrap as they are, or push templates to wrap with their seq (-1 for none). Most turns
   * carry one frame per connection (a P2P push, an answer, one push of a room's fan-out): it waits
   * in `first`, and only a second one makes arrays. Nothing is held between turns.
   */
  private first: Uint8Array | undefined;
  private firstSeq = -1;
  private more: Uint8Array[] | undefined;
  private moreSeqs: number[] | undefined;
  /** Bytes on the wire of this turn's frames; 0 when none waits. */
  private outboxBytes = 0;
  /** ws's own `data` listener while `read` has the socket's reads; undefined once ws has them. */
  private wsOnData: ((chunk: Buffer) => void) | undefined;
  /** ws's limit on a message (0: none): a bigger frame is ws's to refuse. */
  private maxPayload = 0;
  /**
   * A frame whose end has not arrived yet, as it came (joined once it is whole: a large message in
   * many reads is copied once, not once per read), its bytes so far, and how many it needs.
   */
  private partial: Buffer[] | undefined;
  private partialBytes = 0;
  private partialNeeds = 0;

  constructor(
    private readonly ws: WebSocket,
    readonly remote: string,
    readonly tls = false,
  ) {
    // Our frames bypass ws's sender (see `enqueue`); without the raw socket they go through it.
    this.socket = (ws as unknown as { _socket?: Socket })._socket;
  }

  get bufferedBytes(): number {
    return this.socket ? this.socket.writableLength + this.outboxBytes : this.ws.bufferedAmount;
  }

  get receiving(): boolean {
    if (this.partial) return true;
    // ws's receiver: bytes of a frame not yet whole, or the fragments of a message not yet ended.
    const receiver = (this.ws as unknown as { _receiver?: { _bufferedBytes?: number; _fragmented?: number } })._receiver;
    return receiver !== undefined && ((receiver._bufferedBytes ?? 0) > 0 || (receiver._fragmented ?? 0) !== 0);
  }

  /**
   * Sets ws's limit on a message (its receiver's, which counts the fragments of one message
   * together) and ours on the frames `read` takes. The gate lowers it until a login: ws buffers a
   * message whole before the FPNN decoder sees a byte of it, so the decoder's early refusal of a
   * large frame would otherwise come only after megabytes were held.
   */
  limitMessageBytes(bytes: number): void {
    const receiver = (this.ws as unknown as { _receiver?: { _maxPayload?: number } })._receiver;
    if (receiver && typeof receiver._maxPayload === 'number') receiver._maxPayload = bytes;
    if (this.wsOnData) this.maxPayload = bytes;
  }

  private events: TransportEvents | undefined;

  start(events: TransportEvents): void {
    this.events = events;
    // Shared listeners (this = the WebSocket): no closures per connection.
    (this.ws as WebSocketWithTransport)[TRANSPORT] = this;
    this.ws.on('message', onMessage);
    this.ws.on('ping', onPing);
    this.ws.on('error', onError);
    this.ws.once('close', onClose);
    this.takeReads();
  }

  /**
   * Moves the socket's reads from ws's receiver to `read`, unless that receiver already holds
   * bytes (they would be read out of order) or ws is not as we know it (then it keeps them).
   */
  private takeReads(): void {
    const socket = this.socket as SocketWithTransport | undefined;
    const receiver = (this.ws as unknown as { _receiver?: { _bufferedBytes?: number; _maxPayload?: number } })._receiver;
    const wsOnData = socket?.listeners('data').find((l) => l.name === 'socketOnData') as ((chunk: Buffer) => void) | undefined;
    if (!socket || !wsOnData || receiver?._bufferedBytes !== 0 || typeof receiver._maxPayload !== 'number') return;
    this.maxPayload = receiver._maxPayload;
    socket[TRANSPORT] = this;
    socket.removeListener('data', wsOnData);
    socket.on('data', onSocketData);
    this.wsOnData = wsOnData;
  }

  /** @internal Bytes from the socket while we have its reads: whole binary frames go straight up. */
  read(chunk: Buffer): void {
    const wsOnData = this.wsOnData!;
    let buf = chunk;
    if (this.partial) {
      this.partial.push(chunk);
      this.partialBytes += chunk.length;
      if (this.partialBytes < this.partialNeeds) return;
      buf = Buffer.concat(this.partial, this.partialBytes);
      this.partial = undefined;
    }
    const frame = FRAME_BOUNDS;
    let at = 0;
    while (at < buf.length) {
      const scan = binaryFrameAt(buf, at, this.maxPayload, frame);
      if (scan === Scan.INCOMPLETE) {
        this.partial = [buf.subarray(at)];
        this.partialBytes = buf.length - at;
        this.partialNeeds = frame.end - at;
        return;
      }
      if (scan === Scan.OTHER || this.closed) return this.giveBackReads(buf.subarray(at));
      // In place: each read is a buffer of its own, and nothing else looks at it.
      unmaskInPlace(buf, frame.mask, frame.start, frame.end);
      at = frame.end;
      this.events!.onTransportData(buf.subarray(frame.start, at));
      if (!this.wsOnData) {
        // That frame closed the transport, which gave ws the reads: the rest of this read too.
        if (at < buf.length) wsOnData.call(this.socket, buf.subarray(at));
        return;
      }
    }
  }

  /** ws reads from here on, starting with `rest` (at a frame boundary) if given. */
  private giveBackReads(rest?: Buffer): void {
    const wsOnData = this.wsOnData;
    if (!wsOnData) return;
    this.wsOnData = undefined;
    const socket = this.socket!;
    socket.removeListener('data', onSocketData);
    socket.on('data', wsOnData);
    const bytes = rest ?? (this.partial && Buffer.concat(this.partial, this.partialBytes));
    this.partial = undefined;
    if (bytes && bytes.length > 0) wsOnData.call(socket, bytes);
  }

  /** @internal A message read by ws (anything but a whole binary frame, see `read`): text too. */
  received(data: Buffer | ArrayBuffer | Buffer[]): void {
    if (Array.isArray(data)) for (const part of data) this.events!.onTransportData(part);
    else this.events!.onTransportData(data instanceof ArrayBuffer ? new Uint8Array(data) : data);
  }

  /** @internal */
  replied(): void {
    if (!this.closed) this.events!.onTransportReplied?.();
  }

  /** @internal */
  ended(): void {
    this.closed = true;
    this.events!.onTransportClose();
  }

  write(bytes: Uint8Array): void {
    if (this.closed) return;
    if (!this.socket) return void this.ws.send(bytes, SEND_OPTIONS);
    this.enqueue(bytes, -1);
  }

  writeWithSeq(template: Uint8Array, seq: number): number {
    if (this.closed) return 0;
    if (this.socket) return this.enqueue(template, seq >>> 0);
    const frame = Buffer.from(template);
    patchSeq(frame, seq >>> 0);
    this.ws.send(frame, SEND_OPTIONS);
    return headerLength(frame.length) + frame.length;
  }

  /**
   * Our frames go straight to the socket as whole, unmasked binary WebSocket frames (RFC 6455
   * §5.2): ws's sender would cost two writes and an options pass per message. Safe because
   * permessage-deflate is off, so ws never queues frames of its own; its control frames (pong,
   * close) are whole frames written to the same stream (`close` flushes ours first).
   *
   * The frames of one turn are kept (by reference: callers hand over buffers they no longer
   * change) and copied into one buffer when the turn ends: a fan-out's many pushes to this socket
   * then cost one allocation and one stream write, not one of each per push. Returns the bytes
   * the frame will take on the wire.
   */
  private enqueue(payload: Uint8Array, seq: number): number {
    const bytes = headerLength(payload.length) + payload.length;
    if (this.outboxBytes === 0) {
      this.first = payload;
      this.firstSeq = seq;
      if (dirty.push(this) === 1) process.nextTick(flushDirty);
    } else if (!this.more) {
      this.more = [payload];
      this.moreSeqs = [seq];
    } else {
      this.more.push(payload);
      this.moreSeqs!.push(seq);
    }
    this.outboxBytes += bytes;
    return bytes;
  }

  /** @internal Writes this turn's frames as one buffer. */
  flush(): void {
    const first = this.first;
    if (!first) return;
    const out = Buffer.allocUnsafe(this.outboxBytes);
    let at = putFrame(out, 0, first, this.firstSeq);
    const more = this.more;
    if (more) {
      const seqs = this.moreSeqs!;
      for (let i = 0; i < more.length; i++) at = putFrame(out, at, more[i]!, seqs[i]!);
    }
    this.clearOutbox();
    const socket = this.socket!;
    // Not after a close frame (RFC 6455 §5.5.1): ws writes one at once when the peer's comes in,
    // or at our close(), and this turn's frames may still be waiting here.
    if (socket.writable && this.ws.readyState === WS_OPEN) socket.write(out);
  }

  /**
   * @internal A flush threw (it should not: a closed socket is skipped). The connection is dropped
   * rather than left with frames that no tick will write; its client reconnects and catches up.
   */
  flushFailed(): void {
    this.clearOutbox();
    this.ws.terminate();
  }

  private clearOutbox(): void {
    this.first = undefined;
    this.more = undefined;
    this.moreSeqs = undefined;
    this.outboxBytes = 0;
  }

  close(): void {
    if (this.closed) return;
    this.flush(); // before ws's close frame: nothing may follow it
    this.closed = true;
    this.giveBackReads(); // ws reads the peer's close frame
    this.ws.close(1000);
    setTimeout(() => this.ws.terminate(), 2000).unref();
  }
}

const SEND_OPTIONS = { binary: true } as const;
const TRANSPORT = Symbol('rtm.transport');
type WebSocketWithTransport = WebSocket & { [TRANSPORT]?: WebSocketTransport };
type SocketWithTransport = Socket & { [TRANSPORT]?: WebSocketTransport };
/** `read`'s scratch for the frame at hand: one per process, as reads never overlap. */
const FRAME_BOUNDS: FrameBounds = { mask: 0, start: 0, end: 0 };

function onSocketData(this: SocketWithTransport, chunk: Buffer): void {
  this[TRANSPORT]!.read(chunk);
}

function onMessage(this: WebSocketWithTransport, data: Buffer | ArrayBuffer | Buffer[]): void {
  this[TRANSPORT]!.received(data);
}

/** ws has queued the pong (before it emits 'ping'): a peer that pings and never reads is a slow consumer. */
function onPing(this: WebSocketWithTransport): void {
  this[TRANSPORT]!.replied();
}

function onError(this: WebSocketWithTransport): void {
  this.terminate();
}

function onClose(this: WebSocketWithTransport): void {
  this[TRANSPORT]!.ended();
}

/**
 * Transports with frames waiting for the end of this turn, flushed by ONE nextTick for all of them:
 * a room's fan-out queues a frame on thousands of connections per message, and a tick per
 * connection cost an allocation each.
 */
let dirty: WebSocketTransport[] = [];

function flushDirty(): void {
  const list = dirty;
  dirty = [];
  for (let i = 0; i < list.length; i++) {
    const t = list[i]!;
    try {
      t.flush();
    } catch {
      t.flushFailed(); // the others still get their frames
    }
  }
}

/** Wraps one frame (its seq patched in when >= 0) at `at` of the turn's buffer; returns where the next goes. */
function putFrame(out: Buffer, at: number, payload: Uint8Array, seq: number): number {
  at = writeHeader(out, at, payload.length);
  out.set(payload, at);
  if (seq >= 0) patchSeq(out, seq, at); // in place in the turn's buffer
  return at + payload.length;
}

function headerLength(payload: number): number {
  return payload < 126 ? 2 : payload < 65536 ? 4 : 10;
}

/**
 * FIN + binary opcode, unmasked, with the payload length in its 7, 16 or 64-bit form, at `at`;
 * returns where the payload goes.
 */
function writeHeader(out: Buffer, at: number, payload: number): number {
  out[at] = 0x82;
  if (payload < 126) {
    out[at + 1] = payload;
    return at + 2;
  }
  if (payload < 65536) {
    out[at + 1] = 126;
    out.writeUInt16BE(payload, at + 2);
    return at + 4;
  }
  out[at + 1] = 127;
  out.writeUInt32BE(Math.floor(payload / 2 ** 32), at + 2);
  out.writeUInt32BE(payload >>> 0, at + 6);
  return at + 10;
}
