import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { RTMServerClient } from '@rtm/server-sdk';
import { spawnServer, TEST_PID, TEST_SECRET, type SpawnedServer } from '@rtm/testkit';

describe('crash safety', () => {
  const children: SpawnedServer[] = [];
  let dataDir = '';
  after(async () => {
    for (const c of children) await c.kill('SIGKILL');
    if (dataDir) await rm(dataDir, { recursive: true, force: true });
  });

  it('every acknowledged send survives a SIGKILL right after its answer', async () => {
    dataDir = await mkdtemp(join(tmpdir(), 'rtm-crash-'));
    const env = { RTM_DATA_DIR: dataDir, RTM_PROJECT_ID: String(TEST_PID), RTM_PROJECT_SECRET: TEST_SECRET };
    const first = await spawnServer(env);
    children.push(first);
    const sdk = new RTMServerClient({
      pid: TEST_PID,
      secret: TEST_SECRET,
      endpoint: `127.0.0.1:${first.serverPort}`,
      autoReconnect: false,
    });
    await sdk.connect();
    const acked: bigint[] = [];
    // Pipelined sends, then SIGKILL the moment the 500th answer arrives; later ones may or may not land.
    let killed = false;
    await Promise.allSettled(
      Array.from({ length: 800 }, (_, i) =>
        sdk.sendMessage(51, 1n, 2n, `crash ${i}`, '').then(({ mid }) => {
          if (killed) return;
          acked.push(mid);
          if (acked.length === 500) {
            killed = true;
            first.child.kill('SIGKILL');
          }
        }),
      ),
    );
    await first.exited;
    await sdk.close();
    assert.ok(acked.length >= 500, `only ${acked.length} sends were acknowledged`);

    const second = await spawnServer(env);
    children.push(second);
    const reader = new RTMServerClient({
      pid: TEST_PID,
      secret: TEST_SECRET,
      endpoint: `127.0.0.1:${second.serverPort}`,
      autoReconnect: false,
    });
    await reader.connect();
    const stored = new Set<bigint>();
    let lastid: bigint | undefined;
    for (;;) {
      const page = await reader.getP2PMessage(1n, 2n, false, 20, { lastid });
      if (page.num === 0) break;
      for (const m of page.messages) stored.add(m.mid);
      lastid = page.lastid;
    }
    await reader.close();
    const lost = acked.filter((mid) => !stored.has(mid));
    assert.deepEqual(lost, [], `${lost.length} acknowledged messages were lost`);
    await second.kill('SIGTERM');
    assert.equal((await second.exited).code, 0, 'SIGTERM stops the server cleanly');
  });
});
