import { BlockList, isIPv6 } from 'node:net';

/**
 * Loopback and private networks: the peers that may call the internal `*` methods (spec/fpnn.md §8,
 * "internal network only"). IPv4-mapped IPv6 addresses (`::ffff:10.1.2.3`) match their IPv4 rules.
 */
const internal = new BlockList();
internal.addSubnet('127.0.0.0', 8); // loopback
internal.addSubnet('10.0.0.0', 8); // RFC 1918
internal.addSubnet('172.16.0.0', 12);
internal.addSubnet('192.168.0.0', 16);
internal.addAddress('::1', 'ipv6'); // loopback
internal.addSubnet('fc00::', 7, 'ipv6'); // unique local (RFC 4193)

/** Whether `remote` ("ip:port", as transports and the HTTP bridge name a peer) is on an internal network. */
export function isInternalPeer(remote: string): boolean {
  const at = remote.lastIndexOf(':');
  const address = at > 0 ? remote.slice(0, at) : remote;
  try {
    return internal.check(address, isIPv6(address) ? 'ipv6' : 'ipv4');
  } catch {
    return false; // not an address (a socket already gone reports `undefined`)
  }
}
