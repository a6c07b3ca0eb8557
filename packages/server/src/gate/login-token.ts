import { createHmac, timingSafeEqual } from 'node:crypto';

/**
 * The two kinds of client login token (client-api.md §2 `auth`):
 * - a token from `gettoken`, stored per user until `removetoken`;
 * - "auth v2" (`authv: 2` with `ts`): base64(HMAC-SHA256(key = base64decode(hmacSecret),
 *   "<pid>:<uid>:<ts>")), minted by the backend without a call to the server. Nothing is stored,
 *   so it cannot be revoked: it works from `ts` − the clock skew allowed to signatures until
 *   `ts` + its time to live.
 */
export function hmacToken(hmacSecret: string, pid: number, uid: bigint, ts: bigint): string {
  return createHmac('sha256', Buffer.from(hmacSecret, 'base64')).update(`${pid}:${uid}:${ts}`).digest('base64');
}

/** Why an auth v2 token is refused, or undefined when it is good. */
export function refuseHmacToken(
  token: string,
  expected: string,
  ts: bigint,
  nowSeconds: number,
  ttlSeconds: number,
  skewSeconds: number,
): string | undefined {
  const age = nowSeconds - Number(ts);
  if (age > ttlSeconds) return `expired: ts is ${age} s old (RTM_HMAC_TOKEN_TTL_SECONDS ${ttlSeconds})`;
  if (-age > skewSeconds) return `ts is ${-age} s in the future (RTM_SIGN_WINDOW_SECONDS ${skewSeconds})`;
  return sameSecret(token, expected) ? undefined : 'HMAC does not match';
}

/** Compares two secrets in time that does not depend on where they differ. */
export function sameSecret(given: string, expected: string): boolean {
  const a = Buffer.from(given);
  const b = Buffer.from(expected);
  return a.length === b.length && timingSafeEqual(a, b);
}
