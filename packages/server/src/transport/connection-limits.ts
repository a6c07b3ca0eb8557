import { isIPv4, SocketAddress } from 'node:net';

/**
 * How many connections a gate holds at once, in all and from one client address: the client gate
 * (RTM_MAX_CLIENT_CONNECTIONS, RTM_MAX_CONNECTIONS_PER_ADDRESS), and the server gate in all only
 * (RTM_MAX_SERVER_CONNECTIONS). Without a bound, one host on the internet could open sockets until
 * the process runs out of memory (~8 KiB each, 35 – 52 KiB over TLS), and a backend that leaks
 * connections until it runs out of files.
 *
 * Shared by every port of a gate (plain and TLS): a connection takes a slot as it is accepted,
 * before a byte is read, and counts against its client's address once that is known (at once, or
 * after a balancer's PROXY header). Only accept and close do work here, never a message.
 */

/** Why a connection was refused: the `refused: …` reason of rtm_disconnects_total and of the log. */
export const LimitRefusal = {
  total: 'max connections',
  perAddress: 'max per address',
} as const;
export type LimitRefusal = (typeof LimitRefusal)[keyof typeof LimitRefusal];

export interface ConnectionLimitOptions {
  /** Connections held at once over every port sharing the limits; 0 = no limit. */
  readonly maxConnections: number;
  /** Connections held at once from one client address; 0 = no limit. */
  readonly maxPerAddress: number;
}

/** What the slots hold, shared by ConnectionLimits and its slots. */
interface Held {
  connections: number;
  readonly byAddress: Map<string, number>;
}

export class ConnectionLimits {
  private readonly held: Held = { connections: 0, byAddress: new Map() };

  constructor(private readonly options: ConnectionLimitOptions) {}

  /** A slot for a connection just accepted, or undefined when `maxConnections` are held already. */
  admit(): ConnectionSlot | undefined {
    const { maxConnections } = this.options;
    if (maxConnections > 0 && this.held.connections >= maxConnections) return undefined;
    this.held.connections++;
    return new ConnectionSlot(this.held, this.options.maxPerAddress);
  }

  /** Connections holding a slot now. */
  get connections(): number {
    return this.held.connections;
  }

  /** Client addresses holding at least one slot now. */
  get addresses(): number {
    return this.held.byAddress.size;
  }

  /**
   * The most connections one address holds now (0: none): what a per-address limit would have to
   * allow. Walks every address, so for a scrape, never per connection.
   */
  busiestAddress(): number {
    let most = 0;
    for (const n of this.held.byAddress.values()) if (n > most) most = n;
    return most;
  }
}

/** One accepted connection's place in the limits, given back once when it closes. */
export class ConnectionSlot {
  private address: string | undefined;
  private released = false;

  constructor(
    private readonly held: Held,
    private readonly maxPerAddress: number,
  ) {}

  /**
   * Counts the connection against its client's `address` (as a socket or a PROXY header gives it).
   * False, with nothing counted, when that address holds `maxPerAddress` already. Once per slot:
   * a later call (or one after `release`) changes nothing.
   */
  claim(address: string): boolean {
    if (this.address !== undefined || this.released) return true;
    const key = clientAddress(address);
    const n = this.held.byAddress.get(key) ?? 0;
    if (this.maxPerAddress > 0 && n >= this.maxPerAddress) return false;
    this.held.byAddress.set(key, n + 1);
    this.address = key;
    return true;
  }

  /**
   * Gives the slot back, and its address's count. Only the first call counts, so that every way a
   * connection ends (close, error, timeout, failed handshake) may call it without a count leaking
   * or going below zero.
   */
  release(): void {
    if (this.released) return;
    this.released = true;
    this.held.connections--;
    if (this.address === undefined) return;
    const left = this.held.byAddress.get(this.address)! - 1;
    if (left > 0) this.held.byAddress.set(this.address, left);
    else this.held.byAddress.delete(this.address);
  }
}

/**
 * The address a client is counted under: an IPv4-mapped IPv6 address (`::ffff:1.2.3.4`, as a
 * dual-stack socket or a TCP6 PROXY header gives an IPv4 client) as the IPv4 address, and an IPv6
 * one by its /64 (`2001:db8:0:1::/64`), whatever its spelling (a PROXY v1 header may write
 * `2001:DB8:0::1` for node's `2001:db8::1`): a home, an office or a phone is given a whole /64,
 * and a host that counted per address could take 2^64 of them.
 */
export function clientAddress(address: string): string {
  if (!address.includes(':')) return address;
  let canonical: string;
  try {
    canonical = new SocketAddress({ address, family: 'ipv6' }).address;
  } catch {
    return address; // not an IPv6 address: counted as it is written
  }
  const mapped = canonical.startsWith('::ffff:') ? canonical.slice('::ffff:'.length) : '';
  return isIPv4(mapped) ? mapped : `${ipv6Groups(canonical).slice(0, 4).join(':')}::/64`;
}

/** The 8 groups of a canonical IPv6 address (node's form: lower case, `::` for zeros, no dotted quad). */
function ipv6Groups(canonical: string): string[] {
  const [head = '', tail] = canonical.split('::');
  const split = (part: string): string[] => (part === '' ? [] : part.split(':'));
  if (tail === undefined) return split(head);
  const [h, t] = [split(head), split(tail)];
  return [...h, ...Array<string>(8 - h.length - t.length).fill('0'), ...t];
}
