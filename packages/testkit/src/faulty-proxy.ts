import { connect, createServer, type AddressInfo, type Socket } from 'node:net';

/**
 * A TCP proxy for tests of a network that fails, in front of a service (PostgreSQL, NATS): it can
 * go silent (a partition: no byte passes, no reset), cut every connection (a restart) and refuse
 * new ones (a service that is down, for this client only: `refuse` then `cut`).
 */
export interface FaultyProxy {
  /** The proxy's port on 127.0.0.1. */
  readonly port: number;
  /** Bytes from the clients to the service stop (false: they pass). */
  holdRequests: boolean;
  /** Bytes from the service to the clients stop. */
  holdAnswers: boolean;
  /** New connections are closed at once, as by a service that is down (false: they pass). */
  refuse: boolean;
  /** Closes every connection through the proxy, both sides, as a restart of the service would. */
  cut(): void;
  /** Stops listening and cuts what is left. */
  close(): void;
}

export async function startFaultyProxy(host: string, port: number): Promise<FaultyProxy> {
  const sockets = new Set<Socket>();
  const track = (s: Socket): void => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
  };
  const proxy = createServer((down) => {
    if (state.refuse) return void down.destroy();
    const up = connect(port, host);
    track(down);
    track(up);
    down.on('data', (d) => void (state.holdRequests || up.write(d)));
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
    refuse: false,
    cut: () => {
      for (const s of [...sockets]) s.destroy();
    },
    close: () => {
      proxy.close();
      state.cut();
    },
  };
  return state;
}
