import { FpnnErrorCode, RtmError, RtmErrorCode } from '@rtm/fpnn';
import type { Limits } from '../config.js';
import { checkStoredText } from '../services/text.js';
import type { Info } from '../store/store.js';

/**
 * Size checks of info and key-value data (errors-and-limits.md §3).
 * Codes: info over `maxInfoBytes` → 200030 LARGE_MESSAGE_OR_ATTRS (the hosted service's
 * "message or attrs too long", the only size code the browser SDK knows); data key/value over
 * `maxDataKeyBytes` / `maxDataValBytes` → 200035 LARGE_DATA (Unity's code for exactly that).
 */

const bytes = (s: string): number => Buffer.byteLength(s, 'utf8');

/**
 * The parts of a set*info quest. The server gate requires at least one (server-api.md §4: "at
 * least one"); on the client gate both are optional (client-api.md §4) and none changes nothing.
 */
export function infoUpdate(limits: Limits, r: { oinfo?: string; pinfo?: string }, requireOne: boolean): Partial<Info> {
  if (requireOne && r.oinfo === undefined && r.pinfo === undefined) {
    throw new RtmError(FpnnErrorCode.PROTO_KEY_NOT_FOUND, "missing key: give 'oinfo', 'pinfo' or both");
  }
  for (const key of ['oinfo', 'pinfo'] as const) {
    const v = r[key];
    if (v !== undefined && bytes(v) > limits.maxInfoBytes) {
      throw new RtmError(RtmErrorCode.LARGE_MESSAGE_OR_ATTRS, `${key} is ${bytes(v)} bytes, the limit is ${limits.maxInfoBytes}`);
    }
    if (v !== undefined) checkStoredText(key, v);
  }
  const out: Partial<Info> = {};
  if (r.oinfo !== undefined) out.oinfo = r.oinfo;
  if (r.pinfo !== undefined) out.pinfo = r.pinfo;
  return out;
}

/** A key `dataset` stores: within `maxDataKeyBytes`, besides `checkDataLookupKey`. */
export function checkDataKey(limits: Limits, key: string): void {
  checkDataLookupKey(key);
  if (bytes(key) > limits.maxDataKeyBytes)
    throw new RtmError(RtmErrorCode.LARGE_DATA, `key is ${bytes(key)} bytes, the limit is ${limits.maxDataKeyBytes}`);
}

/**
 * A key `dataget` / `datadel` look up. No size limit: errors-and-limits.md §3 bounds what
 * `dataset` stores, and a longer key names no data (`{}`, server-api.md §4), or data stored
 * before the limit was lowered, which must stay readable and deletable.
 */
export function checkDataLookupKey(key: string): void {
  if (key.length === 0) throw new RtmError(RtmErrorCode.INVALID_PARAMETER, 'key must not be empty');
  checkStoredText('key', key);
}

export function checkDataVal(limits: Limits, val: string): void {
  if (bytes(val) > limits.maxDataValBytes)
    throw new RtmError(RtmErrorCode.LARGE_DATA, `val is ${bytes(val)} bytes, the limit is ${limits.maxDataValBytes}`);
  checkStoredText('val', val);
}

/**
 * A connection's attributes (`auth.attrs`, merged by `addattrs`) live as long as it does: their
 * keys and values together may take `maxAttrsBytes` (UTF-8), as a message's attrs may. Without a
 * bound, one client could grow the server's memory by hundreds of MB a second.
 */
export function checkConnectionAttrs(limits: Limits, attrs: Record<string, string>): void {
  let total = 0;
  for (const [k, v] of Object.entries(attrs)) total += bytes(k) + bytes(v);
  if (total > limits.maxAttrsBytes) {
    throw new RtmError(
      RtmErrorCode.LARGE_MESSAGE_OR_ATTRS,
      `connection attrs would take ${total} bytes, the limit is ${limits.maxAttrsBytes}`,
    );
  }
}

/**
 * The longest `ce` a `kickout` takes: a client gate's "host:port", whose host name is at most 253
 * characters (an IPv6 address in brackets far less). The endpoint travels on the bus to every node
 * and, from the server gate, into the store's kickout records: a longer one names no gate, and an
 * unbounded one could exceed the bus's largest message.
 */
export const MAX_ENDPOINT_CHARS = 261;

/** `kickout`'s `ce` as the bus carries it: none, or an endpoint of at most MAX_ENDPOINT_CHARS (else 200034). */
export function kickoutEndpoint(ce: string | undefined): { endpoint?: string } {
  if (!ce) return {};
  if (ce.length > MAX_ENDPOINT_CHARS)
    throw new RtmError(
      RtmErrorCode.INVALID_PARAMETER,
      `ce is ${ce.length} characters: a gate endpoint (host:port) has at most ${MAX_ENDPOINT_CHARS}`,
    );
  return { endpoint: ce };
}
