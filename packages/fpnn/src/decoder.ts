import { FpnnProtocolError } from './errors.js';
import {
  DEFAULT_MAX_FRAME_BYTES,
  Flag,
  type AnswerFrame,
  type Frame,
  HEADER_BYTES,
  MType,
  type PayloadFlag,
  type QuestFrame,
  readU32,
} from './frame.js';

const EMPTY = new Uint8Array(0);
const utf8 = new TextDecoder('utf-8', { fatal: true });

// Method names repeat endlessly (`sendmsg`, `ping`, …): remember the strings of ASCII names seen,
// keyed by length and three sample bytes, so a hit costs a short byte compare instead of building
// a string. Bounded: at most METHOD_CACHE_MAX names are remembered.
const METHOD_CACHE_MAX = 512;
const methodCache = new Map<number, { bytes: Uint8Array; name: string }[]>();
let methodCacheSize = 0;

function decodeMethod(bytes: Uint8Array, start: number, end: number): string {
  const len = end - start;
  const key = len | (bytes[start]! << 8) | (bytes[start + (len >> 1)]! << 16) | (bytes[end - 1]! << 24);
  const entries = methodCache.get(key);
  if (entries) {
    outer: for (const entry of entries) {
      const cached = entry.bytes;
      if (cached.length !== len) continue;
      for (let i = 0; i < len; i++) if (cached[i] !== bytes[start + i]) continue outer;
      return entry.name;
    }
  }
  // Method names are short ASCII in practice; avoid TextDecoder's per-call overhead for them.
  let ascii = '';
  for (let i = start; i < end; i++) {
    const c = bytes[i]!;
    if (c >= 0x80) {
      try {
        return utf8.decode(bytes.subarray(start, end));
      } catch {
        throw new FpnnProtocolError('method name is not valid UTF-8');
      }
    }
    ascii += String.fromCharCode(c);
  }
  if (methodCacheSize < METHOD_CACHE_MAX) {
    methodCacheSize++;
    // A copy: slice() of a Node Buffer (a socket read) is a view that would keep the read alive.
    const entry = { bytes: new Uint8Array(bytes.subarray(start, end)), name: ascii };
    if (entries) entries.push(entry);
    else methodCache.set(key, [entry]);
  }
  return ascii;
}

/**
 * Incremental, bounded FPNN frame decoder (spec/fpnn.md §1).
 *
 * `push(chunk)` accepts bytes as they arrive (split or coalesced arbitrarily) and returns every
 * frame completed by them. The declared length is checked against `maxFrameBytes` as soon as the
 * 12-byte header is in, before the body is buffered. Any framing violation throws
 * `FpnnProtocolError`, after which the decoder must not be used again (close the connection).
 */
export class FrameDecoder {
  /** Contiguous buffered bytes; a frame is always parsed from here. */
  private pending: Uint8Array = EMPTY;
  /**
   * Later chunks not yet merged into `pending`. A frame arriving in many small reads is joined
   * once, when it is complete, instead of re-copying everything buffered on every read (which
   * made a large frame sent in small segments cost O(n²) copying).
   */
  private parts: Uint8Array[] = [];
  private partsBytes = 0;
  private failed = false;

  /** Largest frame accepted, checked from each header; an owner may change it between frames (a login raises it). */
  constructor(public maxFrameBytes: number = DEFAULT_MAX_FRAME_BYTES) {}

  /** Bytes received but not yet part of a whole frame. */
  get bufferedBytes(): number {
    return this.pending.length + this.partsBytes;
  }

  /** Appends bytes and returns every frame they complete. */
  push(chunk: Uint8Array): Frame[] {
    this.append(chunk);
    const frames: Frame[] = [];
    for (let frame = this.next(); frame; frame = this.next()) frames.push(frame);
    return frames;
  }

  /** Appends bytes without decoding; pair with `next()` to stop at a frame boundary. */
  append(chunk: Uint8Array): void {
    if (this.failed) throw new FpnnProtocolError('decoder already failed');
    if (chunk.length === 0) return;
    if (this.pending.length === 0 && this.partsBytes === 0) {
      this.pending = chunk;
      return;
    }
    this.parts.push(chunk);
    this.partsBytes += chunk.length;
  }

  /**
   * The next whole frame, or undefined until more bytes arrive. Stopping between frames is what
   * `*key` needs: the bytes after it are already ciphertext (spec/fpnn.md §6 step 7).
   */
  next(): Frame | undefined {
    if (this.failed) throw new FpnnProtocolError('decoder already failed');
    const available = this.pending.length + this.partsBytes;
    if (available < HEADER_BYTES) return undefined;
    if (this.pending.length < HEADER_BYTES) this.flatten();
    let frame: Frame;
    let total: number;
    let buf = this.pending;
    try {
      total = this.frameLength(buf, 0);
      if (available < total) return undefined;
      if (buf.length < total) buf = this.flatten();
      frame = this.readFrame(buf, 0, total);
    } catch (err) {
      this.failed = true;
      this.pending = EMPTY;
      this.parts = [];
      this.partsBytes = 0;
      throw err;
    }
    // The frame's payload is a view of `buf`; the remainder is a view too. A remainder that is a
    // small tail of a big chunk is copied so it never pins the chunk (not with slice(): on a Node
    // Buffer, which is what sockets deliver, that is a view too).
    const rest = buf.length - total;
    this.pending = rest === 0 ? EMPTY : rest < 4096 && buf.length > 65536 ? new Uint8Array(buf.subarray(total)) : buf.subarray(total);
    if (rest === 0 && this.partsBytes > 0) {
      this.pending = this.parts.length === 1 ? this.parts[0]! : EMPTY;
      if (this.parts.length === 1) {
        this.parts = [];
        this.partsBytes = 0;
      }
    }
    return frame;
  }

  /** Removes and returns the bytes not yet decoded (after `*key`, they are ciphertext). */
  takeBuffered(): Uint8Array {
    const rest = this.flatten();
    this.pending = EMPTY;
    return rest;
  }

  /** Joins `pending` and `parts` into one buffer (one copy) and returns it. */
  private flatten(): Uint8Array {
    if (this.partsBytes === 0) return this.pending;
    const merged = new Uint8Array(this.pending.length + this.partsBytes);
    merged.set(this.pending, 0);
    let at = this.pending.length;
    for (const part of this.parts) {
      merged.set(part, at);
      at += part.length;
    }
    this.pending = merged;
    this.parts = [];
    this.partsBytes = 0;
    return merged;
  }

  /** Validates the header at `offset` and returns the whole frame's length. */
  private frameLength(buf: Uint8Array, offset: number): number {
    if (buf[offset] !== 0x46 || buf[offset + 1] !== 0x50 || buf[offset + 2] !== 0x4e || buf[offset + 3] !== 0x4e) {
      throw new FpnnProtocolError('bad magic: not an FPNN frame');
    }
    const version = buf[offset + 4]!;
    if (version > 1) throw new FpnnProtocolError(`unsupported FPNN version ${version}`);
    const flag = buf[offset + 5]!;
    if ((flag & (Flag.MSGPACK | Flag.JSON)) === 0) throw new FpnnProtocolError(`unsupported payload flag 0x${flag.toString(16)}`);
    const mtype = buf[offset + 6]!;
    const ss = buf[offset + 7]!;
    const psize = (buf[offset + 8]! | (buf[offset + 9]! << 8) | (buf[offset + 10]! << 16) | (buf[offset + 11]! << 24)) >>> 0;
    let total: number;
    if (mtype === MType.ONEWAY) total = HEADER_BYTES + ss + psize;
    else if (mtype === MType.TWOWAY) total = HEADER_BYTES + 4 + ss + psize;
    else if (mtype === MType.ANSWER) total = HEADER_BYTES + 4 + psize;
    else throw new FpnnProtocolError(`unknown frame mtype ${mtype}`);
    if (mtype !== MType.ANSWER && ss === 0) throw new FpnnProtocolError('quest without a method name');
    if (total > this.maxFrameBytes) {
      throw new FpnnProtocolError(`frame of ${total} bytes exceeds the ${this.maxFrameBytes}-byte limit`);
    }
    return total;
  }

  private readFrame(buf: Uint8Array, offset: number, total: number): Frame {
    const flagByte = buf[offset + 5]!;
    // Both bits set is nonsense; msgpack wins as the reference reads the msgpack bit first.
    const flag: PayloadFlag = flagByte & Flag.MSGPACK ? Flag.MSGPACK : Flag.JSON;
    const mtype = buf[offset + 6]!;
    const ss = buf[offset + 7]!;
    const end = offset + total;
    if (mtype === MType.ANSWER) return new DecodedAnswer(flag, readU32(buf, offset + 12), ss === 0, buf, offset + 16, end);
    const oneway = mtype === MType.ONEWAY;
    const methodStart = offset + (oneway ? HEADER_BYTES : 16);
    const seq = oneway ? 0 : readU32(buf, offset + 12);
    const method = decodeMethod(buf, methodStart, methodStart + ss);
    return new DecodedQuest(flag, oneway, seq, method, buf, methodStart + ss, end);
  }
}

/**
 * Decoded frames keep where their payload lies in the received bytes: the payload view is made
 * only if asked for, and `decodeFramePayload` reads the payload in place (msgpackr then reuses one
 * DataView for every frame of a received chunk).
 */
export class DecodedQuest implements QuestFrame {
  readonly kind = 'quest' as const;
  constructor(
    readonly flag: PayloadFlag,
    readonly oneway: boolean,
    readonly seq: number,
    readonly method: string,
    readonly source: Uint8Array,
    readonly payloadStart: number,
    readonly payloadEnd: number,
  ) {}

  get payload(): Uint8Array {
    return this.source.subarray(this.payloadStart, this.payloadEnd);
  }
}

export class DecodedAnswer implements AnswerFrame {
  readonly kind = 'answer' as const;
  constructor(
    readonly flag: PayloadFlag,
    readonly seq: number,
    readonly ok: boolean,
    readonly source: Uint8Array,
    readonly payloadStart: number,
    readonly payloadEnd: number,
  ) {}

  get payload(): Uint8Array {
    return this.source.subarray(this.payloadStart, this.payloadEnd);
  }
}
