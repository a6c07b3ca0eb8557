/**
 * Walking msgpack bytes without decoding them: the bounds scan of a payload before it is decoded
 * (codec.ts) and the search for a str's raw bytes after (str-bytes.ts) step over the same heads.
 */

/** What `readHead` found at a position; callers keep one and pass it in, so a walk allocates nothing. */
export interface MsgpackHead {
  /** Where what follows the head begins: after the head and the bytes it holds inline (a str's, a bin's, an ext's, a number's). */
  next: number;
  /** A map's entries (its keys; as many values follow), -1 for anything else. */
  mapEntries: number;
  /** An array's items, -1 for anything else. */
  arrayItems: number;
}

/**
 * Reads the head of the value at `at` into `head`. Bytes past the end of `b` read as 0: a value
 * cut short only ends the walk early (bounds are checked by the caller, against its own end).
 */
export function readHead(b: Uint8Array, at: number, head: MsgpackHead): MsgpackHead {
  const t = b[at] ?? 0;
  head.mapEntries = -1;
  head.arrayItems = -1;
  if (t < 0x80 || t >= 0xe0 || (t >= 0xc0 && t <= 0xc3))
    head.next = at + 1; // fixint, nil, (unused), bool
  else if (t < 0x90)
    [head.mapEntries, head.next] = [t & 0x0f, at + 1]; // fixmap
  else if (t < 0xa0)
    [head.arrayItems, head.next] = [t & 0x0f, at + 1]; // fixarray
  else if (t < 0xc0)
    head.next = at + 1 + (t & 0x1f); // fixstr
  else if (t === 0xc4 || t === 0xd9)
    head.next = at + 2 + (b[at + 1] ?? 0); // bin8, str8
  else if (t === 0xc5 || t === 0xda)
    head.next = at + 3 + u16(b, at + 1); // bin16, str16
  else if (t === 0xc6 || t === 0xdb)
    head.next = at + 5 + u32(b, at + 1); // bin32, str32
  else if (t === 0xc7)
    head.next = at + 3 + (b[at + 1] ?? 0); // ext8
  else if (t === 0xc8)
    head.next = at + 4 + u16(b, at + 1); // ext16
  else if (t === 0xc9)
    head.next = at + 6 + u32(b, at + 1); // ext32
  else if (t === 0xca)
    head.next = at + 5; // float32
  else if (t === 0xcb)
    head.next = at + 9; // float64
  else if (t <= 0xd3)
    head.next = at + 1 + (1 << ((t - 0xcc) & 3)); // uint8…64, int8…64
  else if (t <= 0xd8)
    head.next = at + 2 + (1 << (t - 0xd4)); // fixext 1…16
  else if (t === 0xdc)
    [head.arrayItems, head.next] = [u16(b, at + 1), at + 3]; // array16
  else if (t === 0xdd)
    [head.arrayItems, head.next] = [u32(b, at + 1), at + 5]; // array32
  else if (t === 0xde)
    [head.mapEntries, head.next] = [u16(b, at + 1), at + 3]; // map16
  else [head.mapEntries, head.next] = [u32(b, at + 1), at + 5]; // map32
  return head;
}

/** The position after the whole value at `at` (a map or array with everything in it), `end` at most. */
export function skipValue(b: Uint8Array, at: number, end: number, head: MsgpackHead = newHead()): number {
  let pending = 1;
  while (pending > 0 && at < end) {
    readHead(b, at, head);
    pending += -1 + (head.mapEntries >= 0 ? 2 * head.mapEntries : Math.max(head.arrayItems, 0));
    at = head.next;
  }
  return at;
}

export function newHead(): MsgpackHead {
  return { next: 0, mapEntries: -1, arrayItems: -1 };
}

export function u16(b: Uint8Array, at: number): number {
  return ((b[at] ?? 0) << 8) | (b[at + 1] ?? 0);
}

export function u32(b: Uint8Array, at: number): number {
  return (((b[at] ?? 0) << 24) | ((b[at + 1] ?? 0) << 16) | ((b[at + 2] ?? 0) << 8) | (b[at + 3] ?? 0)) >>> 0;
}
