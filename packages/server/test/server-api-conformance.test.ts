import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import type { Payload } from '@rtm/fpnn';
import { RawClient, startTestServer, TEST_PID, TEST_SECRET } from '@rtm/testkit';

// Line-by-line conformance with spec/server-api.md (§1–§3, §4 but listen, §5; errors-and-limits.md
// §3): each case is a point where the server once read the spec differently. Real server, raw
// signed FPNN quests, so the exact wire fields and answers are seen.

describe('server-api.md conformance', () => {
  it('§4 data: the dataset key limit bounds what is stored, not what dataget / datadel look up', async () => {
    // server-api.md §4: `dataset` key ≤ 128 bytes; `dataget` answers `{ val }`, or `{}` when the
    // key does not exist; `datadel` `{}`. errors-and-limits.md: 200035 is for `dataset`. A longer
    // key names no data, and data stored before the limit was lowered must stay readable and
    // deletable (both gates: the same store).
    const dataDir = await mkdtemp(join(tmpdir(), 'rtm-test-'));
    const [uid, key] = [7n << 56n, 'a-key-of-20-bytes-..'];
    try {
      const before = await startTestServer({}, { dataDir });
      const b1 = await RawClient.tcp(before.serverEndpoint);
      try {
        assert.deepEqual(await b1.signed('dataset', { uid, key, val: 'v' }, TEST_PID, TEST_SECRET), {});
      } finally {
        b1.close();
        await before.close();
      }

      const server = await startTestServer({ limits: { maxDataKeyBytes: 8 } }, { dataDir });
      const backend = await RawClient.tcp(server.serverEndpoint);
      const client = await RawClient.loggedIn(server.clientEndpoint, backend, uid);
      const signed = (method: string, payload: Payload) => backend.signed(method, payload, TEST_PID, TEST_SECRET);
      try {
        await assert.rejects(signed('dataset', { uid, key, val: 'w' }), { code: 200035 }, 'stores only keys within the limit');
        assert.deepEqual(await signed('dataget', { uid, key: 'k'.repeat(200) }), {}, 'a longer key names nothing');
        assert.deepEqual(await signed('datadel', { uid, key: 'k'.repeat(200) }), {});
        assert.deepEqual(await signed('dataget', { uid, key }), { val: 'v' }, 'stored under the old limit: readable');
        assert.deepEqual(await client.quest('dataget', { key }), { val: 'v' }, 'by the user too');
        assert.deepEqual(await client.quest('datadel', { key }), {});
        assert.deepEqual(await signed('dataget', { uid, key }), {}, 'and deletable');
      } finally {
        client.close();
        backend.close();
        await server.close();
      }
    } finally {
      await rm(dataDir, { recursive: true, force: true });
    }
  });
});
