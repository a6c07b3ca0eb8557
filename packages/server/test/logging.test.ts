/**
 * What an operator finds in the logs when peers misbehave: refused server-gate signatures are
 * logged (once per connection at warn, then at debug), never with the secret or the sign; garbage
 * from peers that never logged in or signed is logged at info, from known peers at warn; refused
 * client logins once per connection at info, then at debug.
 */
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { request } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, beforeEach, describe, it } from 'node:test';
import Database from 'better-sqlite3';
import {
  RawClient,
  recordingSocket,
  signFields,
  startTestServer,
  TEST_PID,
  TEST_SECRET,
  uniqueSalt,
  until,
  type TestServer,
} from '@rtm/testkit';
import { createLogger } from '../src/observability/logger.js';
import { migrate } from '../src/store/sqlite.js';
import { SQLITE_MIGRATIONS } from '../src/store/sqlite-migrations.js';

interface Entry {
  level: number;
  msg: string;
  [key: string]: unknown;
}

const WARN = 40;
const INFO = 30;
const DEBUG = 20;

describe('logs of misbehaving peers', () => {
  const lines: string[] = [];
  const entries = (): Entry[] => lines.map((l) => JSON.parse(l) as Entry);
  let server: TestServer;
  before(async () => {
    const logger = createLogger('debug', { write: (s: string) => lines.push(s) } as unknown as NodeJS.WritableStream);
    server = await startTestServer({}, { logger });
  });
  after(async () => {
    await server.close();
  });
  beforeEach(() => {
    lines.length = 0;
  });

  const signed = (method: string, over: Record<string, unknown> = {}) => ({
    ...signFields(method, TEST_PID, TEST_SECRET, uniqueSalt()),
    ...over,
  });

  it('connections that are not FPNN nor HTTP (scanners, TLS on the plain port): counted, logged once a minute per reason at info', async () => {
    const send = async (bytes: Buffer): Promise<void> => {
      const raw = await recordingSocket(server.clientPort);
      raw.socket.write(bytes);
      assert.ok(await until(() => raw.closed(), 2000), 'closed');
    };
    const clientHello = Buffer.from('160301020001', 'hex'); // a TLS handshake record, as wss:// sends first
    for (let i = 0; i < 5; i++) await send(clientHello);
    for (let i = 0; i < 3; i++) await send(Buffer.from('\x00\x01\x02\x03SSH'));
    const refusals = entries().filter((e) => e.msg === 'connection refused');
    assert.deepEqual(
      refusals.map((e) => [e.level, e.gate, e.reason]),
      [
        [INFO, 'client', 'TLS on a plain port'],
        [INFO, 'client', 'neither FPNN nor HTTP'],
      ],
    );
    assert.match(String(refusals[0]!.hint), /no TLS port: set RTM_TLS_CERT and RTM_TLS_KEY/);
    const metrics = await (await fetch(`http://127.0.0.1:${server.adminPort}/metrics`)).text();
    assert.match(metrics, /rtm_disconnects_total\{gate="client",reason="refused: TLS on a plain port"\} 5\b/);
    assert.match(metrics, /rtm_disconnects_total\{gate="client",reason="refused: neither FPNN nor HTTP"\} 3\b/);
  });

  it('refused server-gate signatures: the first on a connection at warn with reason and peer, the others at debug', async () => {
    const backend = await RawClient.tcp(server.serverEndpoint);
    try {
      const refusals: Record<string, unknown>[] = [
        { sign: 'D41D8CD98F00B204E9800998ECF8427E' }, // a wrong secret
        signFields('gettoken', TEST_PID, TEST_SECRET, uniqueSalt(), Math.floor(Date.now() / 1000) - 3600), // an hour old
        { pid: 424242 }, // an unknown project
      ];
      for (const over of refusals) {
        const answer = await backend.quest('gettoken', { ...signed('gettoken'), ...over, uid: 1 }).catch((e: unknown) => e);
        assert.ok(answer instanceof Error || (answer as { code?: number }).code !== undefined, 'refused');
      }
      const auth = entries().filter((e) => e.msg === 'server-gate authentication failed');
      assert.deepEqual(
        auth.map((e) => e.level),
        [WARN, DEBUG, DEBUG],
      );
      assert.match(String(auth[0]!.reason), /signature does not match/);
      assert.match(String(auth[1]!.reason), /away from the server clock/);
      assert.match(String(auth[2]!.reason), /unknown project 424242/);
      for (const e of auth) {
        assert.match(String(e.remote), /^127\.0\.0\.1:\d+$/);
        assert.equal(e.method, 'gettoken');
      }
      // A second connection gets its own warning.
      const other = await RawClient.tcp(server.serverEndpoint);
      await other.quest('gettoken', { ...signed('gettoken'), sign: 'X', uid: 1 }).catch(() => undefined);
      other.close();
      assert.equal(entries().filter((e) => e.msg === 'server-gate authentication failed' && e.level === WARN).length, 2);
      const text = lines.join('\n');
      assert.ok(!text.includes(TEST_SECRET), 'the secret is never logged');
      assert.ok(!text.includes('D41D8CD98F00B204E9800998ECF8427E'), 'the sign is never logged');
    } finally {
      backend.close();
    }
  });

  it('a refused signature over the HTTP bridge is logged at warn too', async () => {
    const res = await fetch(`http://${server.serverEndpoint}/service/gettoken`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ ...signed('gettoken'), salt: Number(uniqueSalt() & 0xffffffn), sign: 'BAD', uid: 1 }),
    });
    assert.equal(((await res.json()) as { code?: number }).code, 200002, 'refused: invalid pid or sign');
    const auth = entries().filter((e) => e.msg === 'server-gate authentication failed');
    assert.equal(auth.length, 1);
    assert.equal(auth[0]!.level, WARN);
    assert.equal(auth[0]!.transport, 'http');
    // A backend without keep-alive calls from a new port each time: still one warning a minute.
    for (let i = 0; i < 2; i++) {
      const body = JSON.stringify({ ...signed('gettoken'), salt: Number(uniqueSalt() & 0xffffffn), sign: 'BAD', uid: 1 });
      const status = await new Promise<number>((resolve, reject) => {
        const req = request(`http://${server.serverEndpoint}/service/gettoken`, { method: 'POST', agent: false }, (r) => {
          r.resume();
          r.on('end', () => resolve(r.statusCode ?? 0));
        });
        req.on('error', reject);
        req.end(body);
      });
      assert.equal(status, 500);
    }
    const all = entries().filter((e) => e.msg === 'server-gate authentication failed');
    assert.deepEqual(
      all.map((e) => e.level),
      [WARN, DEBUG, DEBUG],
    );
    assert.equal(new Set(all.map((e) => e.remote)).size, 3, 'three connections');
  });

  /** A frame header with a bad version and a huge size: refused at its first read. */
  const GARBAGE = Buffer.from('FPNN\x09\x80\x00\x00\xff\xff\xff\xff\x00\x00\x00\x00', 'latin1');
  const protocolErrors = async (): Promise<Entry[]> => {
    for (let i = 0; i < 100 && !entries().some((e) => e.msg === 'protocol error, closing connection'); i++)
      await new Promise((r) => setTimeout(r, 10));
    return entries().filter((e) => e.msg === 'protocol error, closing connection');
  };

  it('garbage from a peer that never logged in or signed: protocol error at info', async () => {
    for (const endpoint of [server.clientEndpoint, server.serverEndpoint]) {
      lines.length = 0;
      const peer = await RawClient.tcp(endpoint);
      peer.socket.write(GARBAGE);
      await peer.closed;
      const logged = await protocolErrors();
      assert.equal(logged.length, 1, endpoint);
      assert.equal(logged[0]!.level, INFO);
      assert.equal(logged[0]!.authenticated, false);
    }
  });

  it('garbage from a backend that has signed a quest on the connection: protocol error at warn', async () => {
    const backend = await RawClient.tcp(server.serverEndpoint);
    await backend.quest('gettoken', { ...signed('gettoken'), uid: 1 });
    backend.socket.write(GARBAGE);
    await backend.closed;
    const logged = await protocolErrors();
    assert.equal(logged.length, 1);
    assert.equal(logged[0]!.level, WARN);
    assert.equal(logged[0]!.authenticated, true);
  });

  it('refused client logins (bad token): the first on a connection at info, the others at debug', async () => {
    const client = await RawClient.websocket(server.clientEndpoint);
    let answered = 0;
    try {
      for (let i = 0; i < 30; i++) {
        const a = await client.quest('auth', { pid: TEST_PID, uid: 1001n, token: 'not-the-token' }).catch(() => undefined);
        if (a) answered++;
      }
    } finally {
      client.close();
    }
    const refused = entries().filter((e) => e.msg === 'login refused: bad token');
    assert.ok(answered > 1);
    assert.equal(refused.length, answered);
    assert.equal(refused.filter((e) => e.level >= INFO).length, 1, `${answered} refused logins on one connection`);
    assert.equal(refused[0]!.level, INFO);
    // A second connection gets its own info line.
    const other = await RawClient.websocket(server.clientEndpoint);
    await other.quest('auth', { pid: TEST_PID, uid: 1001n, token: 'not-the-token' }).catch(() => undefined);
    other.close();
    assert.equal(entries().filter((e) => e.msg === 'login refused: bad token' && e.level === INFO).length, 2);
  });

  it('a good signature and other error answers log no authentication failure', async () => {
    const backend = await RawClient.tcp(server.serverEndpoint);
    try {
      await backend.quest('gettoken', { ...signed('gettoken'), uid: 1 });
      await backend.quest('gettoken', { ...signed('gettoken'), uid: 'x' }).catch(() => undefined); // a bad argument, signed
      assert.equal(entries().filter((e) => e.msg === 'server-gate authentication failed').length, 0);
    } finally {
      backend.close();
    }
  });

  it('a store failure that fails every quest alike is logged once per kind, not once per quest', async () => {
    const store = server.services.store;
    const dataGet = store.dataGet.bind(store);
    let message = 'disk I/O error';
    store.dataGet = () => Promise.reject(new Error(message));
    const backend = await RawClient.tcp(server.serverEndpoint);
    try {
      const codes = await Promise.all(
        Array.from({ length: 50 }, () =>
          backend.quest('dataget', { ...signed('dataget'), uid: 1, key: 'k' }).then(
            () => 0,
            (err: { code?: number }) => err.code,
          ),
        ),
      );
      assert.deepEqual(new Set(codes), new Set([20001]), 'every quest is answered 20001');
      const failed = () => entries().filter((e) => e.msg === 'handler failed');
      assert.equal(failed().length, 1, 'fifty alike: one line');
      assert.equal(failed()[0]!.level, 50);
      assert.equal(failed()[0]!['method'], 'dataget');
      message = 'database is locked'; // another kind: its own line
      await backend.quest('dataget', { ...signed('dataget'), uid: 1, key: 'k' }).catch(() => undefined);
      assert.equal(failed().length, 2);
    } finally {
      store.dataGet = dataGet;
      backend.close();
    }
  });

  it('so is one that fails every quest over the HTTP bridge (README: once per method and error message per 10 s)', async () => {
    const store = server.services.store;
    const dataGet = store.dataGet.bind(store);
    store.dataGet = () => Promise.reject(new Error('disk I/O error over http'));
    const call = async (): Promise<[number, unknown]> => {
      const salt = uniqueSalt() & 0xffffffn; // a JSON number
      const res = await fetch(`http://${server.serverEndpoint}/service/dataget`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ ...signFields('dataget', TEST_PID, TEST_SECRET, salt), salt: Number(salt), uid: 1, key: 'k' }),
      });
      return [res.status, ((await res.json()) as { code?: number }).code];
    };
    const internal = async (): Promise<number> =>
      Number(
        /^rtm_quests_total\{gate="server",method="dataget",outcome="internal"\} (\d+)$/m.exec(
          await server.services.metrics.registry.metrics(),
        )?.[1] ?? 0,
      );
    const before = await internal();
    try {
      const answers = await Promise.all(Array.from({ length: 20 }, call));
      assert.deepEqual(new Set(answers.map(String)), new Set([String([500, 20001])]), 'every quest is answered 500 {code: 20001}');
      const failed = entries().filter((e) => /handler failed/.test(e.msg));
      assert.equal(failed.length, 1, `twenty alike: one line, got ${failed.length}`);
      assert.equal(failed[0]!.level, 50);
      assert.equal(failed[0]!['method'], 'dataget');
      // README: rtm_quests_total counts them all, with the outcome `internal`.
      assert.equal((await internal()) - before, 20);
    } finally {
      store.dataGet = dataGet;
    }
  });
});

describe('logs of schema migrations at start (embedded store)', () => {
  const NEWEST = Math.max(...SQLITE_MIGRATIONS.map((m) => m.version));
  /** The schema lines a start on `dataDir` logs, at debug and up. */
  const startOn = async (dataDir: string): Promise<Entry[]> => {
    const lines: string[] = [];
    const logger = createLogger('debug', { write: (s: string) => lines.push(s) } as unknown as NodeJS.WritableStream);
    const server = await startTestServer({}, { dataDir, logger });
    await server.close();
    return lines.map((l) => JSON.parse(l) as Entry).filter((e) => /schema/.test(e.msg));
  };
  const inTempDir = async (fn: (dir: string) => Promise<void>): Promise<void> => {
    const dir = await mkdtemp(join(tmpdir(), 'rtm-logging-'));
    try {
      await fn(dir);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  };

  it('a new database: one info line for its dozen steps, each step at debug; the next start, none', () =>
    inTempDir(async (dir) => {
      const logged = await startOn(dir);
      const info = logged.filter((e) => e.level >= INFO);
      assert.equal(info.length, 1, JSON.stringify(info));
      assert.match(info[0]!.msg, new RegExp(`^schema upgraded from version 0 to ${NEWEST}: ${NEWEST} migrations in \\d+ ms$`));
      assert.deepEqual([info[0]!.store, info[0]!.from, info[0]!.to, info[0]!.migrations], ['sqlite', 0, NEWEST, NEWEST]);
      assert.equal(typeof info[0]!.ms, 'number');
      assert.deepEqual(
        logged.filter((e) => e.level === DEBUG).map((e) => [e.msg, e.version]),
        SQLITE_MIGRATIONS.flatMap((m) => [
          ['applying schema migration', m.version],
          ['schema migration applied', m.version],
        ]),
      );
      assert.deepEqual(await startOn(dir), [], 'nothing to migrate');
    }));

  it('an existing database: a line as the upgrade begins (its steps may take a while), one once applied', () =>
    inTempDir(async (dir) => {
      const db = new Database(join(dir, 'rtm.sqlite'));
      migrate(
        db,
        SQLITE_MIGRATIONS.filter((m) => m.version < NEWEST),
        () => {},
      );
      db.close();
      const info = (await startOn(dir)).filter((e) => e.level >= INFO);
      assert.equal(info.length, 2, JSON.stringify(info));
      assert.equal(info[0]!.msg, `upgrading schema from version ${NEWEST - 1} to ${NEWEST}: 1 migration`);
      assert.match(info[1]!.msg, new RegExp(`^schema upgraded from version ${NEWEST - 1} to ${NEWEST}: 1 migration in \\d+ ms$`));
    }));
});
