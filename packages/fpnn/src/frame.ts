/**
 * FPNN frame layout (spec/fpnn.md §1). All header integers are little-endian.
 *
 *   0  magic "FPNN" | 4 version | 5 flag | 6 mtype | 7 ss | 8 psize u32 | 12 seq u32 (twoway, answer)
 *   then the method name (quests) and the payload.
 */
export const MAGIC = new Uint8Array([0x46, 0x50, 0x4e, 0x4e]);
/** Sent in every frame we write; 0 (Python SDK) and 1 are accepted. */
export const VERSION = 1;
export const Flag = { MSGPACK: 0x80, JSON: 0x40 } as const;
export type PayloadFlag = (typeof Flag)[keyof typeof Flag];
export const MType = { ONEWAY: 0, TWOWAY: 1, ANSWER: 2 } as const;
export type FrameMType = (typeof MType)[keyof typeof MType];

export const HEADER_BYTES = 12;
/** Default maximum frame length (FPNN `max.package.len`). */
export const DEFAULT_MAX_FRAME_BYTES = 8 * 1024 * 1024;

export interface QuestFrame {
  readonly kind: 'quest';
  readonly flag: PayloadFlag;
  readonly oneway: boolean;
  /** 0 for oneway quests. */
  readonly seq: number;
  readonly method: string;
  readonly payload: Uint8Array;
}

export interface AnswerFrame {
  readonly kind: 'answer';
  readonly flag: PayloadFlag;
  readonly seq: number;
  /** false when the status byte is non-zero: the payload is `{ code, ex }`. */
  readonly ok: boolean;
  readonly payload: Uint8Array;
}

export type Frame = QuestFrame | AnswerFrame;

const encoder = new TextEncoder();

/**
 * Frame buffers come from Node's pooled `Buffer.allocUnsafe` when it exists (every byte is then
 * written below): a fresh `new Uint8Array(n)` costs a zeroed backing store per frame, which was as
 * expensive as the msgpack encoding itself. Browsers get plain `Uint8Array`s.
 */
const NodeBuffer = (globalThis as { Buffer?: { allocUnsafe(size: number): Uint8Array } }).Buffer;
const allocFrame: (size: number) => Uint8Array =
  NodeBuffer && typeof NodeBuffer.allocUnsafe === 'function' ? (size) => NodeBuffer.allocUnsafe(size) : (size) => new Uint8Array(size);

/** Reads a little-endian u32 of a frame header (psize, seq): FPNN's header fields are little-endian. */
export function readU32(buf: Uint8Array, at: number): number {
  return (buf[at]! | (buf[at + 1]! << 8) | (buf[at + 2]! << 16) | (buf[at + 3]! << 24)) >>> 0;
}

function writeU32(out: Uint8Array, at: number, value: number): void {
  out[at] = value & 0xff;
  out[at + 1] = (value >>> 8) & 0xff;
  out[at + 2] = (value >>> 16) & 0xff;
  out[at + 3] = (value >>> 24) & 0xff;
}

function writeHeader(out: Uint8Array, flag: number, mtype: number, ss: number, psize: number): void {
  out[0] = 0x46;
  out[1] = 0x50;
  out[2] = 0x4e;
  out[3] = 0x4e;
  out[4] = VERSION;
  out[5] = flag;
  out[6] = mtype;
  out[7] = ss;
  writeU32(out, 8, psize);
}

/** Writes the 12-byte header, and the seq when given (twoway quests and answers). */
export function writeFrameHeader(out: Uint8Array, flag: number, mtype: number, ss: number, psize: number, seq?: number): void {
  writeHeader(out, flag, mtype, ss, psize);
  if (seq !== undefined) writeU32(out, 12, seq >>> 0);
}

const methodBytesCache = new Map<string, Uint8Array>();
/** UTF-8 bytes of a method name (cached), checked to be 1..255 bytes. */
export function methodBytes(method: string): Uint8Array {
  let bytes = methodBytesCache.get(method);
  if (!bytes) {
    bytes = encoder.encode(method);
    if (bytes.length === 0 || bytes.length > 255) throw new RangeError(`method name must be 1..255 bytes: '${method}'`);
    if (methodBytesCache.size < 1024) methodBytesCache.set(method, bytes);
  }
  return bytes;
}

/** A quest frame. `seq` is ignored for oneway quests (they carry none). */
export function encodeQuest(method: string, payload: Uint8Array, flag: PayloadFlag, oneway: boolean, seq = 0): Uint8Array {
  const name = methodBytes(method);
  const seqBytes = oneway ? 0 : 4;
  const out = allocFrame(HEADER_BYTES + seqBytes + name.length + payload.length);
  writeHeader(out, flag, oneway ? MType.ONEWAY : MType.TWOWAY, name.length, payload.length);
  if (!oneway) writeU32(out, 12, seq >>> 0);
  out.set(name, HEADER_BYTES + seqBytes);
  out.set(payload, HEADER_BYTES + seqBytes + name.length);
  return out;
}

/** An answer frame; `ok = false` writes status 1 (the payload must then be `{ code, ex }`). */
export function encodeAnswer(seq: number, payload: Uint8Array, flag: PayloadFlag, ok = true): Uint8Array {
  const out = allocFrame(16 + payload.length);
  writeHeader(out, flag, MType.ANSWER, ok ? 0 : 1, payload.length);
  writeU32(out, 12, seq >>> 0);
  out.set(payload, 16);
  return out;
}

/**
 * Rewrites the seq of an encoded twoway quest in place: the frame starts at `at` of `buffer` (0:
 * the buffer is the frame). Lets one encoded push be written to many connections, each with its
 * own seq (DESIGN.md: "encoded once per message"), also once copied into a larger buffer.
 */
export function patchSeq(buffer: Uint8Array, seq: number, at = 0): void {
  writeU32(buffer, at + 12, seq);
}
