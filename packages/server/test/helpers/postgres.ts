import { randomBytes } from 'node:crypto';
import pg from 'pg';

/**
 * The PostgreSQL of tests that run on both stores: env RTM_TEST_POSTGRES_URL, default the local
 * service. Each test uses a fresh schema and drops it; unreachable → skipped with the message
 * `postgresUnreachable` gives, except when CI=true (then such tests fail).
 */
export const PG_URL = process.env['RTM_TEST_POSTGRES_URL'] ?? 'postgres://postgres@127.0.0.1:5432/test';

/** Why PostgreSQL cannot be used now, or undefined when it answers. */
export async function postgresUnreachable(): Promise<string | undefined> {
  const client = new pg.Client({ connectionString: PG_URL, connectionTimeoutMillis: 3000 });
  client.on('error', () => {});
  try {
    await client.connect();
    await client.query('SELECT 1');
    return undefined;
  } catch (err) {
    return `PostgreSQL unreachable at ${PG_URL} (${(err as Error).message}); set RTM_TEST_POSTGRES_URL`;
  } finally {
    await client.end().catch(() => {});
  }
}

/** A schema name no other test uses (`rtm_<what>_<random>`: the leftovers check finds `rtm%`). */
export const freshSchema = (what = 'test'): string => `rtm_${what}_${randomBytes(6).toString('hex')}`;

export async function dropSchema(schema: string): Promise<void> {
  const client = new pg.Client({ connectionString: PG_URL });
  await client.connect();
  try {
    await client.query(`DROP SCHEMA IF EXISTS ${schema} CASCADE`);
  } finally {
    await client.end();
  }
}
