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
  let at = start;
  for (const key of path) {
    const map = mapHeader(source, at);
    if (!map) return undefined;
    at = map.at;
    let found = -1;
    for (let i = 0; i < map.entries && at < end; i++) {
      const k = strRange(source, at);
      const valueAt = k ? k.end : skipValue(source, at, end);
      if (k && sameAscii(source, k.start, k.end, key)) found = valueAt;
      at = skipValue(source, valueAt, end);
    }
    if (found < 0) return undefined;
    at = found;
  }
  const s = strRange(source, at);
  return s && s.end <= end ? source.subarray(s.start, s.end) : undefined;
}

function sameAscii(b: Uint8Array, start: number, end: number, key: string): boolean {
  if (end - start !== key.length) return false;
  for (let i = 0; i < key.length; i++) if (b[start + i] !== key.charCodeAt(i)) return false;
  return true;
}

function mapHeader(b: Uint8Array, at: number): { entries: number; at: number } | undefined {
  const t = b[at]!;
  if (t >= 0x80 && t < 0x90) return { entries: t & 0x0f, at: at + 1 };
  if (t === 0xde) return { entries: (b[at + 1]! << 8) | b[at + 2]!, at: at + 3 };
  if (t === 0xdf) return { entries: u32(b, at + 1), at: at + 5 };
  return undefined;
}

/** The bytes of the str at `at`, or undefined when the value there is not a str. */
function strRange(b: Uint8Array, at: number): { start: number; end: number } | undefined {
  const t = b[at]!;
  let length: number;
  let start: number;
  if (t >= 0xa0 && t < 0xc0) [length, start] = [t & 0x1f, at + 1];
  else if (t === 0xd9) [length, start] = [b[at + 1]!, at + 2];
  else if (t === 0xda) [length, start] = [(b[at + 1]! << 8) | b[at + 2]!, at + 3];
  else if (t === 0xdb) [length, start] = [u32(b, at + 1), at + 5];
  else return undefined;
  return { start, end: start + length };
}

function u32(b: Uint8Array, at: number): number {
  return ((b[at]! << 24) >>> 0) + ((b[at + 1]! << 16) | (b[at + 2]! << 8) | b[at + 3]!);
}

/** The position after the whole value at `at` (a map or array with everything in it). */
function skipValue(b: Uint8Array, at: number, end: number): number {
  let pending = 1;
  while (pending > 0 && at < end) {
    pending--;
    const t = b[at]!;
    if (t < 0x80 || t >= 0xe0 || t === 0xc0 || t === 0xc1 || t === 0xc2 || t === 0xc3) at += 1;
    else if (t < 0x90) [pending, at] = [pending + 2 * (t & 0x0f), at + 1];
    else if (t < 0xa0) [pending, at] = [pending + (t & 0x0f), at + 1];
    else if (t < 0xc0) at += 1 + (t & 0x1f);
    else
      switch (t) {
        case 0xc4: // bin 8
        case 0xd9: // str 8
          at += 2 + b[at + 1]!;
          break;
        case 0xc5:
        case 0xda:
          at += 3 + ((b[at + 1]! << 8) | b[at + 2]!);
          break;
        case 0xc6:
        case 0xdb:
          at += 5 + u32(b, at + 1);
          break;
        case 0xc7: // ext 8
          at += 3 + b[at + 1]!;
          break;
        case 0xc8:
          at += 4 + ((b[at + 1]! << 8) | b[at + 2]!);
          break;
        case 0xc9:
          at += 6 + u32(b, at + 1);
          break;
        case 0xca: // float 32
        case 0xce: // uint 32
        case 0xd2: // int 32
          at += 5;
          break;
        case 0xcb:
        case 0xcf:
        case 0xd3:
          at += 9;
          break;
        case 0xcc:
        case 0xd0:
          at += 2;
          break;
        case 0xcd:
        case 0xd1:
          at += 3;
          break;
        case 0xd4: // fixext 1, 2, 4, 8, 16
          at += 3;
          break;
        case 0xd5:
          at += 4;
          break;
        case 0xd6:
          at += 6;
          break;
        case 0xd7:
          at += 10;
          break;
        case 0xd8:
          at += 18;
          break;
        case 0xdc:
          [pending, at] = [pending + ((b[at + 1]! << 8) | b[at + 2]!), at + 3];
          break;
        case 0xdd:
          [pending, at] = [pending + u32(b, at + 1), at + 5];
          break;
        case 0xde:
          [pending, at] = [pending + 2 * ((b[at + 1]! << 8) | b[at + 2]!), at + 3];
          break;
        default: // 0xdf map 32
          [pending, at] = [pending + 2 * u32(b, at + 1), at + 5];
      }
  }
  return at;
}
