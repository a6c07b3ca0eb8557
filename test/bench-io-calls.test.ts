import assert from 'node:assert/strict';
import { closeSync, openSync, readSync, writeSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { ioCalls } from '../bench/workers/lib.js';

// The latency bench reports the server's read/write system calls per message from these counts.

describe('bench: ioCalls', () => {
  it('counts each read and write this process makes', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'rtm-io-calls-'));
    try {
      const fd = openSync(join(dir, 'f'), 'w+');
      const before = ioCalls(process.pid);
      for (let i = 0; i < 100; i++) writeSync(fd, 'x', i);
      for (let i = 0; i < 50; i++) readSync(fd, Buffer.alloc(1), 0, 1, i);
      const after = ioCalls(process.pid);
      closeSync(fd);
      // Other threads of the process (the test runner's) may add a few of their own.
      assert.ok(after - before >= 150 && after - before < 200, `counted ${after - before}`);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
