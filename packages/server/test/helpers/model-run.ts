import assert from 'node:assert/strict';
import { rm } from 'node:fs/promises';
import fc from 'fast-check';
import { RTMClient } from '@rtm/client-sdk';
import { RTMServerClient } from '@rtm/server-sdk';
import { startTestServer, TEST_PID, TEST_SECRET, until, type TestServer } from '@rtm/testkit';

// What the model-based tests (unread-model, rooms-model, listen-model) share: running the
// sequences, and the client sessions the models log in and out.

export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/**
 * Runs the property's sequences: RTM_MODEL_RUNS of them (default `runs`, 12). The failure names
 * the commands, and its cause says which answer was wrong. To replay it, from its report:
 * - RTM_MODEL_SEED=<seed> alone runs the same sequences again and shrinks again;
 * - with RTM_MODEL_PATH=<path> and RTM_MODEL_REPLAY_PATH=<the counterexample's `replayPath`>, it
 *   runs the shrunk sequence at once (fast-check needs both for commands; `modelCommands`).
 */
export async function assertModel<T>(property: fc.IAsyncProperty<T>, runs = 12): Promise<void> {
  await fc
    .assert(property, {
      numRuns: Number(process.env.RTM_MODEL_RUNS ?? runs),
      ...(process.env.RTM_MODEL_SEED ? { seed: Number(process.env.RTM_MODEL_SEED), path: process.env.RTM_MODEL_PATH || undefined } : {}),
    })
    .catch((err: Error) => {
      throw new Error(`${err.message}\n\ncaused by: ${String((err.cause as Error | undefined)?.stack ?? err.cause)}`);
    });
}

/** The commands of a model's sequences: at most `maxCommands`; RTM_MODEL_REPLAY_PATH replays a failure (`assertModel`). */
export function modelCommands<M extends object, W>(
  commands: fc.Arbitrary<fc.AsyncCommand<M, W>>[],
  maxCommands: number,
): fc.Arbitrary<Iterable<fc.AsyncCommand<M, W>>> {
  return fc.commands(commands, { maxCommands, size: 'large', replayPath: process.env.RTM_MODEL_REPLAY_PATH || undefined });
}

/** A client of `uid` logged in at `endpoint` with a token from `backend`; `attach` sees it first (its push handlers). */
export async function loginClient(
  endpoint: string,
  backend: RTMServerClient,
  uid: bigint,
  attach?: (client: RTMClient) => void,
): Promise<RTMClient> {
  const client = new RTMClient({ endpoint, pid: TEST_PID, autoReconnect: false });
  attach?.(client);
  assert.deepEqual(await client.login(uid, await backend.getToken(uid)), { ok: true });
  return client;
}

/** Waits (up to `withinMs`) until no node has a session of `uid` (the server has seen its last session close). */
export async function untilOffline(backend: RTMServerClient, uid: bigint, withinMs = 1000): Promise<void> {
  for (const until = performance.now() + withinMs; performance.now() < until;) {
    if ((await backend.getOnlineUsers([uid])).length === 0) return;
    await sleep(5);
  }
  assert.fail(`user ${uid} still online after ${withinMs} ms`);
}

/**
 * Ends one session of `uid`: `bye`, or a drop (the socket closed without a word), and waits until
 * the server has seen it end, `sessionsLeft` sessions of the user remaining there. Else the next
 * step may reach the server first: a `bye` of the other device, seen before this drop, would not
 * be the end of the last session.
 */
export async function endSession(
  client: RTMClient,
  how: 'bye' | 'drop',
  sessionsLeft: number,
  backend: RTMServerClient,
  uid: bigint,
  server: TestServer | readonly TestServer[],
): Promise<void> {
  if (how === 'bye') await client.logout();
  else client.close();
  const servers = Array.isArray(server) ? server : [server as TestServer];
  const sessions = () => servers.reduce((n, s) => n + (s.services.presence.connectionsOf(TEST_PID, uid)?.size ?? 0), 0);
  for (const until = performance.now() + 1000; sessions() !== sessionsLeft; await sleep(2)) {
    assert.ok(performance.now() < until, `user ${uid} still has ${sessions()} sessions, not ${sessionsLeft}`);
  }
  if (sessionsLeft === 0) await untilOffline(backend, uid);
}

/**
 * Waits (up to `withinMs`) until the server has the answer to every push it wrote to `uid`'s
 * sessions: a session that ends with one unanswered counts its message as unread
 * (gate/unanswered-pushes.ts). The device answers as it gets the push; on a loaded machine the
 * answer may take a while to reach the server.
 */
export async function untilAnswered(server: TestServer, uid: bigint, withinMs = 5000): Promise<void> {
  const answered = () => [...(server.services.presence.connectionsOf(TEST_PID, uid) ?? [])].every((c) => c.oldestUnanswered === undefined);
  assert.ok(await until(answered, withinMs), `the server still waits for answers to pushes to user ${uid} after ${withinMs} ms`);
}

/**
 * Before a login of a user whose last session dropped at `droppedAt` (performance.now()): too close
 * to the end of the grace period to tell which side of it the login falls on, wait until it is
 * surely over. Returns whether the presence ended (else the login continues it).
 */
export async function pastGraceIfNear(droppedAt: number | undefined, graceMs: number): Promise<boolean> {
  if (droppedAt === undefined || performance.now() - droppedAt <= graceMs / 2) return false;
  await sleep(droppedAt + graceMs + 500 - performance.now()); // as WaitPastGrace: a sweep (250 ms) and the end's writes
  return true;
}

/** What the group-member command needs of a model's world: the backend, the run's users and group. */
export interface GroupWorld {
  readonly backend: RTMServerClient;
  readonly uids: readonly bigint[];
  readonly gid: bigint;
}

/** The backend adds user `u` to the run's group (again: nothing changes) or removes them; `apply` tells the model. */
export class GroupMember<M extends object> implements fc.AsyncCommand<M, GroupWorld> {
  constructor(
    readonly u: number,
    readonly join: boolean,
    private readonly apply: (model: M, u: number, join: boolean) => void,
  ) {}
  check(): boolean {
    return true;
  }
  async run(m: M, w: GroupWorld): Promise<void> {
    const uids = [w.uids[this.u]!];
    await (this.join ? w.backend.addGroupMembers(w.gid, uids) : w.backend.deleteGroupMembers(w.gid, uids));
    this.apply(m, this.u, this.join);
  }
  toString(): string {
    return `${this.join ? 'add' : 'del'}GroupMember(${this.u})`;
  }
}

/** A backend (server SDK) connected to `server`'s server gate. */
export async function connectBackend(server: TestServer): Promise<RTMServerClient> {
  const backend = new RTMServerClient({ pid: TEST_PID, secret: TEST_SECRET, endpoint: server.serverEndpoint, autoReconnect: false });
  await backend.connect();
  return backend;
}

/**
 * What a model runs against: one server (`Deployment`) or the nodes of a cluster
 * (helpers/cluster-deployment.ts), with a backend on the first.
 */
export interface ModelDeployment {
  readonly backend: RTMServerClient;
  readonly servers: readonly TestServer[];
  /** Where device slot `slot` logs in. */
  clientEndpoint(slot: number): string;
  /** Until every node has handled what the others published so far (one server: at once). */
  settle(): Promise<void>;
  /** A graceful stop and a start on the same data: every session drops. */
  restart(): Promise<void>;
  close(): Promise<void>;
}

/** The server under test and a backend connected to it; a restart replaces both, on the same data. */
export class Deployment implements ModelDeployment {
  private constructor(
    public server: TestServer,
    public backend: RTMServerClient,
    private readonly start: (dataDir?: string) => Promise<TestServer>,
  ) {}

  /** `start(dataDir)` starts the server, on `dataDir` when given (a restart), else on a new one it keeps. */
  static async start(start: (dataDir?: string) => Promise<TestServer>): Promise<Deployment> {
    const server = await start();
    return new Deployment(server, await connectBackend(server), start);
  }

  /** Starts a server with these settings on a new data directory, kept across restarts (`close` removes it). */
  static of(settings: Parameters<typeof startTestServer>[0], options: Parameters<typeof startTestServer>[1] = {}): Promise<Deployment> {
    return Deployment.start((dataDir) => startTestServer(settings, dataDir ? { ...options, dataDir } : { ...options, keepData: true }));
  }

  get servers(): readonly TestServer[] {
    return [this.server];
  }

  clientEndpoint(): string {
    return this.server.clientEndpoint;
  }

  async settle(): Promise<void> {}

  /** A graceful stop and a start on the same data directory: every session drops. */
  async restart(): Promise<void> {
    await this.backend.close();
    await this.server.close();
    const next = await Deployment.start(() => this.start(this.server.dataDir));
    this.server = next.server;
    this.backend = next.backend;
  }

  async close(): Promise<void> {
    await this.backend.close();
    await this.server.close();
    await rm(this.server.dataDir, { recursive: true, force: true });
  }
}

/** What the restart command needs of a model's world: its deployment, and its devices (their sessions drop). */
export interface RestartWorld {
  readonly deployment: ModelDeployment;
  readonly devices: ({ readonly client: RTMClient } | undefined)[][];
}

/**
 * The server restarts (a graceful stop, a start on the same data): every session drops, and the
 * grace periods, the new ones and those already running, go on in the new process. `settle` runs
 * first; `dropped(model, at)` tells the model that every session dropped at `at` (performance.now()).
 */
export class Restart<M extends object, W extends RestartWorld> implements fc.AsyncCommand<M, W> {
  constructor(
    private readonly dropped: (model: M, at: number) => void,
    private readonly settle?: (model: M, world: W) => Promise<void>,
  ) {}
  check(): boolean {
    return true;
  }
  async run(m: M, w: W): Promise<void> {
    await this.settle?.(m, w);
    const at = performance.now();
    await w.deployment.restart();
    for (const row of w.devices) {
      for (let slot = 0; slot < row.length; slot++) {
        row[slot]?.client.close();
        row[slot] = undefined;
      }
    }
    this.dropped(m, at);
  }
  toString(): string {
    return 'restart';
  }
}

/**
 * Waits until every running grace period of `graceMs` has surely run out: after a restart, at the
 * next sweep of handed-over ones (every 250 ms at the models' grace periods). `ended` tells the model.
 */
export class WaitPastGrace<M extends { readonly dropped: readonly unknown[] }> implements fc.AsyncCommand<M, unknown> {
  /** `always`: also when no grace period runs (time passes for the sessions that stay, too). */
  constructor(
    private readonly graceMs: number,
    private readonly ended: (model: M) => void,
    private readonly always = false,
  ) {}
  check(m: Readonly<M>): boolean {
    return this.always || m.dropped.some((d) => d !== undefined);
  }
  async run(m: M): Promise<void> {
    await sleep(this.graceMs + 500);
    this.ended(m);
  }
  toString(): string {
    return 'wait past the grace period';
  }
}
