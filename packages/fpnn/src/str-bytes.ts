import { newHead, readHead, skipValue, u16, u32, type MsgpackHead } from './msgpack-heads.js';

/**
 * A msgpack str whose bytes are not UTF-8. The SDKs send such bodies: the Go server SDK's
 * `SendMessageByBinary` (and its group, room and broadcast forms) sends `string(bytes)`, a str
 * holding whatever the bytes were. Read as a JS string they would turn into U+FFFD for good, where
 * the spec keeps a body's kind and bytes and echoes them unchanged (fpnn.md §2). So the body is
 * kept as its bytes, and written back as a str with the same bytes: in pushes, history, `getmsg`,
 * the store and the bus alike.
 *
 * A `Uint8Array`, so that code which only carries bodies needs no change; what tells str from bin
 * (the encoder, the stores, the comparison of duplicates) checks `instanceof StrBytes`. A copy by
 * `Buffer.from` or a structured clone (to a thread) is a plain `Uint8Array`, bin: those places
 * carry the kind beside the bytes.
 */
export class StrBytes extends Uint8Array {
  /** The same bytes as a StrBytes (a view, not a copy). */
  static view(bytes: Uint8Array): StrBytes {
    return new StrBytes(bytes.buffer as ArrayBuffer, bytes.byteOffset, bytes.byteLength);
  }

  /** A plain `Uint8Array` view of the same bytes (for code that must not see the subclass). */
  plain(): Uint8Array {
    return new Uint8Array(this.buffer as ArrayBuffer, this.byteOffset, this.byteLength);
  }
}

const strictUtf8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });

/** Whether `bytes` are UTF-8 (what a str's bytes should be; then a string holds them exactly). */
export function isUtf8(bytes: Uint8Array): boolean {
  try {
    strictUtf8.decode(bytes);
    return true;
  } catch {
    return false;
  }
}

/** A str body read from its bytes: the string if they are UTF-8, else the bytes as a StrBytes. */
export function strBody(bytes: Uint8Array): string | StrBytes {
  try {
    return strictUtf8.decode(bytes);
  } catch {
    return StrBytes.view(bytes);
  }
}

/**
 * The bytes of the str at `path` (map keys, outermost first) in the msgpack value at
 * `source[start, end)`, or undefined when there is none. A key given twice counts as its last
 * occurrence, as msgpackr decodes it. Called only after a decode succeeded, so the bytes are
 * well formed; a length that runs past `end` ends the search all the same.
 */
export function strBytesAt(source: Uint8Array, start: number, end: number, path: readonly string[]): Uint8Array | undefined {
  const at = valueAt(source, start, end, path, newHead());
  return at === undefined ? undefined : strAt(source, at, end);
}

/**
 * The bytes of the str at `index` of each row (an array) of the array under the top-level `key`:
 * the bodies of history entries, `msgs[i][5]` (server-api.md §3.1). One slot per row, undefined
 * where that element is not a str; undefined when there is no such array. As `strBytesAt`, on
 * bytes that decoded.
 */
export function strBytesOfRows(
  source: Uint8Array,
  start: number,
  end: number,
  key: string,
  index: number,
): (Uint8Array | undefined)[] | undefined {
  const head = newHead();
  const at = valueAt(source, start, end, [key], head);
  if (at === undefined) return undefined;
  const rows = readHead(source, at, head).arrayItems;
  if (rows < 0) return undefined;
  const out: (Uint8Array | undefined)[] = [];
  let row = head.next;
  for (let r = 0; r < rows && row < end; r++) {
    const items = readHead(source, row, head).arrayItems;
    if (items < 0) {
      out.push(undefined);
      row = skipValue(source, row, end, head);
      continue;
    }
    let item = head.next;
    let bytes: Uint8Array | undefined;
    for (let i = 0; i < items && item < end; i++) {
      if (i === index) bytes = strAt(source, item, end);
      item = skipValue(source, item, end, head);
    }
    out.push(bytes);
    row = item;
  }
  return out;
}

/** Where the value at `path` (map keys, outermost first) begins, or undefined. */
function valueAt(source: Uint8Array, start: number, end: number, path: readonly string[], head: MsgpackHead): number | undefined {
  let at = start;
  for (const key of path) {
    const entries = readHead(source, at, head).mapEntries;
    if (entries < 0) return undefined;
    at = head.next;
    let found = -1;
    for (let i = 0; i < entries && at < end; i++) {
      const k = strRange(source, at);
      const valueStart = k ? k.end : skipValue(source, at, end, head);
      if (k && sameAscii(source, k.start, k.end, key)) found = valueStart;
      at = skipValue(source, valueStart, end, head);
    }
    if (found < 0) return undefined;
    at = found;
  }
  return at;
}

/** The bytes of the str at `at`, if the value there is one that ends by `end`. */
function strAt(source: Uint8Array, at: number, end: number): Uint8Array | undefined {
  const s = strRange(source, at);
  return s && s.end <= end ? source.subarray(s.start, s.end) : undefined;
}

function sameAscii(b: Uint8Array, start: number, end: number, key: string): boolean {
  if (end - start !== key.length) return false;
  for (let i = 0; i < key.length; i++) if (b[start + i] !== key.charCodeAt(i)) return false;
  return true;
}

/** The bytes of the str at `at`, or undefined when the value there is not a str. */
function strRange(b: Uint8Array, at: number): { start: number; end: number } | undefined {
  const t = b[at]!;
  let length: number;
  let start: number;
  if (t >= 0xa0 && t < 0xc0) [length, start] = [t & 0x1f, at + 1];
  else if (t === 0xd9) [length, start] = [b[at + 1]!, at + 2];
  else if (t === 0xda) [length, start] = [u16(b, at + 1), at + 3];
  else if (t === 0xdb) [length, start] = [u32(b, at + 1), at + 5];
  else return undefined;
  return { start, end: start + length };
}
