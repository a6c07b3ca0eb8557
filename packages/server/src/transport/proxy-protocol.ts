import { BlockList, isIP, isIPv4, isIPv6, SocketAddress } from 'node:net';

/**
 * The PROXY protocol (HAProxy's, versions 1 and 2: https://www.haproxy.org/download/2.9/doc/proxy-protocol.txt),
 * which a layer-4 balancer sends first on each connection it opens to a backend, to say whose
 * connection it is: without it every client's address is the balancer's, in the logs and for the
 * internal-network check of the `*` methods.
 */

/** What a header says: the client's "address:port", or `local` (the balancer's own connection, e.g. a health check). */
export type ProxyHeader = { readonly kind: 'proxied'; readonly remote: string } | { readonly kind: 'local' };

export class ProxyHeaderError extends Error {
  override readonly name = 'ProxyHeaderError';
}

const V1_PREFIX = Buffer.from('PROXY ', 'latin1');
/** A v1 line is at most 107 bytes, CRLF included. */
const V1_MAX = 107;
const V2_SIGNATURE = Buffer.from([0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a]);
/** v2 headers larger than this (addresses and TLVs) are refused: balancers send a few dozen bytes. */
const V2_MAX_BODY = 2048;

/**
 * Reads a PROXY header at the start of `bytes`. Returns undefined while the header is not whole
 * yet, else the header and its length on the wire (what follows is the client's stream). Throws
 * ProxyHeaderError as soon as the bytes cannot be one (a client that sends none, or garbage).
 */
export function parseProxyHeader(bytes: Uint8Array): { header: ProxyHeader; length: number } | undefined {
  const buf = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  if (startsLike(buf, V2_SIGNATURE)) return buf.length < V2_SIGNATURE.length ? undefined : parseV2(buf);
  if (startsLike(buf, V1_PREFIX)) return buf.length < V1_PREFIX.length ? undefined : parseV1(buf);
  throw new ProxyHeaderError('no PROXY protocol header (v1 or v2)');
}

/** Whether `buf` is a prefix of `expected`, or starts with it. */
function startsLike(buf: Buffer, expected: Buffer): boolean {
  const n = Math.min(buf.length, expected.length);
  return buf.subarray(0, n).equals(expected.subarray(0, n));
}

function parseV1(buf: Buffer): { header: ProxyHeader; length: number } | undefined {
  const end = buf.subarray(0, V1_MAX).indexOf('\r\n', 0, 'latin1');
  if (end < 0) {
    if (buf.length >= V1_MAX) throw new ProxyHeaderError(`PROXY v1 line longer than ${V1_MAX} bytes`);
    return undefined;
  }
  const fields = buf.subarray(0, end).toString('latin1').split(' ');
  const length = end + 2;
  if (fields[1] === 'UNKNOWN') return { header: { kind: 'local' }, length };
  if (fields.length !== 6 || (fields[1] !== 'TCP4' && fields[1] !== 'TCP6'))
    throw new ProxyHeaderError(`PROXY v1: expected 'PROXY TCP4|TCP6 <src> <dst> <sport> <dport>', got '${fields.join(' ')}'`);
  const [, family, source, destination, sourcePort, destinationPort] = fields as [string, string, string, string, string, string];
  const valid = family === 'TCP4' ? isIPv4 : isIPv6;
  if (!valid(source) || !valid(destination)) throw new ProxyHeaderError(`PROXY v1: bad ${family} address in '${fields.join(' ')}'`);
  if (!isPort(sourcePort) || !isPort(destinationPort)) throw new ProxyHeaderError(`PROXY v1: bad port in '${fields.join(' ')}'`);
  return { header: { kind: 'proxied', remote: `${source}:${Number(sourcePort)}` }, length };
}

const isPort = (s: string): boolean => /^\d{1,5}$/.test(s) && Number(s) <= 65535;

function parseV2(buf: Buffer): { header: ProxyHeader; length: number } | undefined {
  if (buf.length < 16) return undefined;
  const versionCommand = buf[12]!;
  if (versionCommand >> 4 !== 2) throw new ProxyHeaderError(`PROXY v2: version ${versionCommand >> 4}`);
  const command = versionCommand & 0x0f;
  if (command > 1) throw new ProxyHeaderError(`PROXY v2: command ${command}`);
  const bodyLength = buf.readUInt16BE(14);
  if (bodyLength > V2_MAX_BODY) throw new ProxyHeaderError(`PROXY v2: ${bodyLength} bytes of addresses and TLVs (at most ${V2_MAX_BODY})`);
  const length = 16 + bodyLength;
  if (buf.length < length) return undefined;
  if (command === 0) return { header: { kind: 'local' }, length }; // LOCAL: the balancer's own
  const family = buf[13]!;
  const body = buf.subarray(16, length);
  if (family === 0x11) {
    // TCP over IPv4: source, destination (4 bytes each), source port, destination port.
    if (body.length < 12) throw new ProxyHeaderError('PROXY v2: TCP4 addresses cut short');
    return { header: { kind: 'proxied', remote: `${[...body.subarray(0, 4)].join('.')}:${body.readUInt16BE(8)}` }, length };
  }
  if (family === 0x21) {
    // TCP over IPv6: 16 + 16 bytes, then the ports.
    if (body.length < 36) throw new ProxyHeaderError('PROXY v2: TCP6 addresses cut short');
    return { header: { kind: 'proxied', remote: `${ipv6(body.subarray(0, 16))}:${body.readUInt16BE(32)}` }, length };
  }
  // UNSPEC, UDP, unix sockets: no TCP client address to take; the connection is the balancer's.
  return { header: { kind: 'local' }, length };
}

/** An IPv6 address as node prints a remoteAddress (compressed: `::1`, `2001:db8::1`). */
function ipv6(bytes: Buffer): string {
  const groups = Array.from({ length: 8 }, (_, i) => bytes.readUInt16BE(i * 2).toString(16));
  return new SocketAddress({ address: groups.join(':'), family: 'ipv6' }).address;
}

/**
 * The balancers allowed to send a header, from RTM_PROXY_PROTOCOL_FROM: addresses and CIDR
 * ranges, comma-separated. Throws with the bad entry named.
 */
export function proxySources(list: string): BlockList {
  const sources = new BlockList();
  for (const entry of list
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean)) {
    const [address, bits] = entry.split('/') as [string, string | undefined];
    const family = isIP(address);
    if (family === 0) throw new Error(`'${entry}' is not an address or a CIDR range`);
    const type = family === 4 ? 'ipv4' : 'ipv6';
    if (bits === undefined) sources.addAddress(address, type);
    else {
      const prefix = Number(bits);
      if (!/^\d+$/.test(bits) || prefix > (family === 4 ? 32 : 128)) throw new Error(`'${entry}': bad prefix length`);
      sources.addSubnet(address, prefix, type);
    }
  }
  return sources;
}
