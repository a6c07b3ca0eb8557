import { connect, createServer, type AddressInfo, type Socket } from 'node:net';

/**
 * A TCP proxy for tests of a network that fails, in front of a service (PostgreSQL, NATS): it can
 * go silent (a partition: no byte passes, no reset), be slow, cut every connection (a restart) and refuse
 * new ones (a service that is down, for this client only: `refuse` then `cut`).
 */
export interface FaultyProxy {
  /** The proxy's port on 127.0.0.1. */
  readonly port: number;
  /** Bytes from the clients to the service stop (false: they pass). */
  holdRequests: boolean;
  /** Bytes from the service to the clients stop. */
  holdAnswers: boolean;
  /** Bytes from the clients to the service pass this many ms late, in order (a slow link). @default 0 */
  requestDelayMs: number;
  /** New connections are closed at once, as by a service that is down (false: they pass). */
  refuse: boolean;
  /** Closes every connection through the proxy, both sides, as a restart of the service would. */
  cut(): void;
  /**
   * A partition as the sockets feel it (`holdRequests` reads and drops): nothing is read either
   * way, so the kernel's buffers fill and the writers' own back up behind them, and a new
   * connection gets no answer. `stall(false)` ends it.
   */
  stall(on?: boolean): void;
  /** Stops listening and cuts what is left. */
  close(): void;
}

export async function startFaultyProxy(host: string, port: number): Promise<FaultyProxy> {
  const sockets = new Set<Socket>();
  const track = (s: Socket): void => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
  };
  let stalled = false;
  const proxy = createServer((down) => {
    if (state.refuse) return void down.destroy();
    if (stalled) {
      track(down);
      return void down.pause();
    }
    const up = connect(port, host);
    track(down);
    track(up);
    down.on('data', (d) => {
      if (state.holdRequests) return;
      // Timers of one duration fire in the order they were set: bytes stay in order.
      if (state.requestDelayMs > 0) setTimeout(() => up.write(d), state.requestDelayMs);
      else up.write(d);
    });
    up.on('data', (d) => void (state.holdAnswers || down.write(d)));
    for (const [a, b] of [
      [down, up],
      [up, down],
    ] as const) {
      a.on('error', () => b.destroy());
      a.on('close', () => b.destroy());
    }
  });
  await new Promise<void>((resolve) => proxy.listen(0, '127.0.0.1', () => resolve()));
  const state: FaultyProxy = {
    port: (proxy.address() as AddressInfo).port,
    holdRequests: false,
    holdAnswers: false,
    requestDelayMs: 0,
    refuse: false,
    cut: () => {
      for (const s of [...sockets]) s.destroy();
    },
    stall: (on = true) => {
      stalled = on;
      for (const s of sockets) {
        if (on) s.pause();
        else s.resume();
      }
    },
    close: () => {
      proxy.close();
      state.cut();
    },
  };
  return state;
}
