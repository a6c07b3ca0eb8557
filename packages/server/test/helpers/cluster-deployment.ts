import { randomBytes } from 'node:crypto';
import type { RTMClient } from '@rtm/client-sdk';
import type { RTMServerClient } from '@rtm/server-sdk';
import { startTestServer, until, type TestServer } from '@rtm/testkit';
import { NatsBus } from '../../src/bus/nats.js';
import { PostgresStore } from '../../src/store/postgres.js';
import { admin, NATS_URL, POSTGRES_URL } from '../../../../test/cluster/cluster.js';
import { connectBackend, loginClient, type ModelDeployment } from './model-run.js';

/**
 * A cluster of in-process nodes for the model tests: each its own server on one PostgreSQL schema
 * (new, dropped at `close`) and one NATS subject prefix, with a backend connected to each. The
 * models put device slot s on node s % nodes.
 *
 * What one node publishes reaches the others a moment later; `settle` waits until every node has
 * handled what every other published so far: each backend sends a marker to a probe user with a
 * device on the next node, and the bus keeps each node's order.
 */
export class ClusterDeployment implements ModelDeployment {
  private probes: { uid: bigint; client: RTMClient; got: bigint[] }[] = [];
  private markers = 0n;

  private constructor(
    public servers: TestServer[],
    public backends: RTMServerClient[],
    private readonly start: () => Promise<TestServer[]>,
    private readonly schema: string,
  ) {}

  static async of(nodes: number, settings: Parameters<typeof startTestServer>[0]): Promise<ClusterDeployment> {
    const schema = `rtm_model_${randomBytes(6).toString('hex')}`;
    const subjectPrefix = `rtmmodel_${randomBytes(6).toString('hex')}`;
    const start = async (): Promise<TestServer[]> => {
      const servers: TestServer[] = [];
      // One after another: the first creates the schema (migrations take an advisory lock anyway).
      for (let i = 0; i < nodes; i++) {
        servers.push(
          await startTestServer(settings, {
            makeStore: () => new PostgresStore({ url: POSTGRES_URL, schema, poolSize: 4 }),
            bus: new NatsBus({ url: NATS_URL, subjectPrefix, discoveryMs: 50 }),
          }),
        );
      }
      return servers;
    };
    const servers = await start();
    const deployment = new ClusterDeployment(servers, await Promise.all(servers.map(connectBackend)), start, schema);
    await deployment.loginProbes();
    return deployment;
  }

  get backend(): RTMServerClient {
    return this.backends[0]!;
  }

  clientEndpoint(slot: number): string {
    return this.servers[slot % this.servers.length]!.clientEndpoint;
  }

  private async loginProbes(): Promise<void> {
    this.probes = [];
    for (let i = 0; i < this.servers.length; i++) {
      const uid = (1n << 61n) + BigInt(Date.now()) * 16n + BigInt(i);
      const got: bigint[] = [];
      const client = await loginClient(this.servers[i]!.clientEndpoint, this.backend, uid, (c) => c.on('message', (m) => got.push(m.mid)));
      this.probes.push({ uid, client, got });
    }
  }

  async settle(): Promise<void> {
    await Promise.all(
      this.backends.map(async (backend, i) => {
        const probe = this.probes[(i + 1) % this.probes.length]!;
        const { mid } = await backend.sendMessage(51, probe.uid + 1000n, probe.uid, `marker ${++this.markers}`);
        if (!(await until(() => probe.got.includes(mid), 5000))) throw new Error(`the bus did not carry node ${i}'s marker within 5 s`);
      }),
    );
  }

  /** A graceful stop of every node and a start of as many on the same schema: every session drops. */
  async restart(): Promise<void> {
    await this.stop();
    this.servers = await this.start();
    this.backends = await Promise.all(this.servers.map(connectBackend));
    await this.loginProbes();
  }

  private async stop(): Promise<void> {
    for (const p of this.probes) p.client.close();
    await Promise.all(this.backends.map((b) => b.close()));
    await Promise.all(this.servers.map((s) => s.close()));
  }

  async close(): Promise<void> {
    await this.stop();
    await admin((c) => c.query(`DROP SCHEMA IF EXISTS ${this.schema} CASCADE`));
  }
}
