import { createHash, timingSafeEqual } from 'node:crypto';
import { BlockList, isIPv6 } from 'node:net';

/**
 * Who may take a backup from the admin port. The port is unauthenticated (`/healthz`,
 * `/metrics`: counts, no data) and may be bound to a wildcard address, while a backup is every
 * message and every login token of every project. So:
 *
 * - with RTM_ADMIN_TOKEN set, every peer, loopback too, must send `Authorization: Bearer <token>`
 *   (compared in constant time: how long a wrong guess takes says nothing about the token);
 * - without it, only loopback peers are served: a backup then needs a shell on the machine, which
 *   reads the data directory anyway. A proxy on the same machine in front of the admin port makes
 *   every client a loopback peer: set the token then.
 *
 * A pure function of the peer, the header and the setting, so that both paths are testable on
 * loopback.
 */
export type BackupAccess = { allowed: true } | { allowed: false; reason: string };

const loopback = new BlockList();
loopback.addSubnet('127.0.0.0', 8);
loopback.addAddress('::1', 'ipv6');

/** Whether `address` (a socket's `remoteAddress`: an IP, IPv4-mapped IPv6 included) is loopback. */
export function isLoopbackAddress(address: string | undefined): boolean {
  if (!address) return false;
  // `::ffff:127.0.0.1`, as a dual-stack socket (a wildcard `::` bind) names an IPv4 peer.
  const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(address);
  const ip = mapped ? mapped[1]! : address;
  try {
    return loopback.check(ip, isIPv6(ip) ? 'ipv6' : 'ipv4');
  } catch {
    return false; // not an address
  }
}

/** Equal strings in time that does not depend on where they differ, nor on the length of the guess. */
function sameSecret(given: string, expected: string): boolean {
  const digest = (s: string): Buffer => createHash('sha256').update(s).digest();
  return timingSafeEqual(digest(given), digest(expected));
}

/**
 * May `peer` (its address) with this `Authorization` header have a backup, given RTM_ADMIN_TOKEN
 * (`token`, undefined when unset)? A refusal says what to set or send.
 */
export function backupAccess(peer: string | undefined, authorization: string | undefined, token: string | undefined): BackupAccess {
  if (token === undefined) {
    if (isLoopbackAddress(peer)) return { allowed: true };
    return {
      allowed: false,
      reason:
        'a backup holds every message of every project: without RTM_ADMIN_TOKEN it is served to loopback peers only; ' +
        "set RTM_ADMIN_TOKEN on the server and send it as 'Authorization: Bearer <token>' (rtm backup does when RTM_ADMIN_TOKEN is set)",
    };
  }
  // RFC 7235: the scheme is case-insensitive; one space or more before the credentials.
  const bearer = /^Bearer +(\S+) *$/i.exec(authorization ?? '');
  if (!bearer)
    return {
      allowed: false,
      reason: "this server has RTM_ADMIN_TOKEN set: send 'Authorization: Bearer <token>' (rtm backup does when RTM_ADMIN_TOKEN is set)",
    };
  if (!sameSecret(bearer[1]!, token)) return { allowed: false, reason: 'the bearer token is not the RTM_ADMIN_TOKEN of this server' };
  return { allowed: true };
}
