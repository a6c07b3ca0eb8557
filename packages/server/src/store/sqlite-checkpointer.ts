import { createRequire } from 'node:module';
import { Worker } from 'node:worker_threads';

/**
 * Checkpoints the WAL from a worker thread, so the event loop never pays for it, and decides when
 * the WAL restarts.
 *
 * SQLite's automatic checkpoint runs inside the commit that crosses the threshold: with the
 * server's single connection that commit (and every quest waiting on the event loop) stalls for
 * the copy and the fsync. The worker opens its own connection and runs PASSIVE checkpoints, which
 * never block the writer; the main connection keeps a much higher auto-checkpoint threshold as a
 * backstop should the worker fall behind or die. On the P2P latency bench (5k msgs/s) the median
 * send→push went from 1.6–2.8 ms to 0.76–0.79 ms.
 *
 * Restarts. Once a checkpoint has copied every frame, the next commit writes the WAL again from
 * its start, and that commit fsyncs the new WAL header (synchronous=NORMAL does so, so that a power
 * loss cannot mix old and new frames): a stall of the event loop, 0.2–2 ms on the bench machine.
 * Left alone this happens whenever a checkpoint happens to finish between two commits, several
 * times a second under load, and together with the backstop's checkpoints inside commits it set
 * the P2P p99. So between ticks a second connection of the worker holds a read transaction (the
 * "hold"): a commit cannot restart the WAL while a reader uses it, and the next checkpoint may
 * still copy every frame up to the hold's snapshot, which is renewed just before it. Once the WAL
 * holds `restartPages` frames the worker lets go and asks the event loop (`onRestartWanted`) to
 * run the last, short checkpoint itself (it is the only writer, so that one always completes):
 * one restart per `restartPages` frames, at a moment of our choosing. (With the writer thread on,
 * the event loop is not the writer and that checkpoint may not finish: the WAL then restarts when
 * a checkpoint happens to finish between two commits, or at the backstop.)
 *
 * That lap costs the event loop three fsyncs: the WAL before copying, the database once every
 * frame is in it, and the new WAL header at the restart. Only a complete checkpoint syncs the
 * database, so the one in the lap used to flush everything the worker had copied since the last
 * restart (3.3–3.8 ms of a 6 ms stall on the bench machine, once a second at 5k msgs/s). The
 * worker now fsyncs the database itself before it asks, and the lap takes 2–3 ms. None of the
 * three can go: without the header's fsync, a power loss could bring frames of the previous WAL
 * back over newer pages (https://sqlite.org/src/info/ff5be73dee).
 */
export class WalCheckpointer {
  private readonly worker: Worker;
  private exited: Promise<void>;

  /** `path`: the database file; `name`: what its connections open (`connectionName`: the path, or a URI). */
  constructor(path: string, name: string, everyMs: number, restartPages: number) {
    const moduleUrl = createRequire(import.meta.url).resolve('better-sqlite3');
    // Plain CommonJS evaluated in the worker: no TypeScript loader needed there.
    this.worker = new Worker(
      `
      const { parentPort, workerData } = require('node:worker_threads');
      const { openSync, readSync, closeSync, fsyncSync } = require('node:fs');
      const Database = require(workerData.moduleUrl);
      const db = new Database(workerData.name, { timeout: 5000 });
      // For fsync only (see the restart below); writable, as some systems want for an fsync.
      const dbFile = openSync(workerData.path, 'r+');
      const holder = new Database(workerData.name, { timeout: 5000 });
      const readSomething = holder.prepare('SELECT 1 FROM sqlite_master LIMIT 1');
      let held = false;
      const letGo = () => { if (held) { holder.exec('COMMIT'); held = false; } };
      const hold = () => { letGo(); holder.exec('BEGIN'); held = true; readSomething.get(); };
      // The WAL header's checkpoint sequence number (bytes 12-15) grows at every restart.
      const header = Buffer.alloc(16);
      const restartsSoFar = () => {
        let fd;
        try { fd = openSync(workerData.path + '-wal', 'r'); return readSync(fd, header, 0, 16, 0) === 16 ? header.readUInt32BE(12) : -1; }
        catch { return -1; }
        finally { if (fd !== undefined) closeSync(fd); }
      };
      let waitingSince = -1; // restart sequence when a restart was asked for; -1: holding
      let askedAt = 0;
      // A failure that lasts (a full disk, an I/O error) fails every tick (ten a second by default):
      // the same one is reported at most once a minute, with how often it came meanwhile.
      let last = { message: '', at: 0, repeats: 0 };
      let failed = false; // in this tick
      const report = (message) => {
        failed = true;
        const now = Date.now();
        if (message === last.message && now - last.at < 60000) return void last.repeats++;
        const repeats = message === last.message && last.repeats > 0 ? ' (' + last.repeats + ' more times since it was last reported)' : '';
        parentPort.postMessage(message + repeats);
        last = { message, at: now, repeats: 0 };
      };
      const tick = () => {
        if (waitingSince >= 0 && restartsSoFar() !== waitingSince) waitingSince = -1;
        if (waitingSince < 0) hold();
        let [r] = db.pragma('wal_checkpoint(PASSIVE)');
        if (waitingSince < 0 && r.log >= workerData.restartPages) {
          // A second pass copies what came during the first, so the event loop's lap is short.
          hold();
          [r] = db.pragma('wal_checkpoint(PASSIVE)');
          letGo();
          // An incomplete checkpoint does not sync the database file: what the passes since the last
          // restart copied would otherwise wait for the event loop's fsync at its final checkpoint.
          // Only a shortcut: should it fail, that checkpoint still syncs, so the restart is asked for.
          try { fsyncSync(dbFile); } catch (err) { report('fsync of the database: ' + String(err && err.message || err)); }
          waitingSince = restartsSoFar();
          askedAt = r.log;
          parentPort.postMessage({ restart: r.log });
        } else if (waitingSince >= 0 && r.log >= askedAt + workerData.restartPages) {
          askedAt = r.log; // still not restarted (a reader of another process?): ask again
          parentPort.postMessage({ restart: r.log });
        }
      };
      const timer = setInterval(() => {
        failed = false;
        try { tick(); } catch (err) { report(String(err && err.message || err)); }
        // A tick without failure after one that was reported: the operator hears that it is over.
        if (!failed && last.message !== '') {
          parentPort.postMessage({ recovered: last.message });
          last = { message: '', at: 0, repeats: 0 };
        }
      }, workerData.everyMs);
      parentPort.on('message', () => {
        clearInterval(timer);
        letGo();
        closeSync(dbFile);
        holder.close();
        db.close();
        parentPort.close();
      });
      `,
      { eval: true, workerData: { path, name, moduleUrl, everyMs, restartPages } },
    );
    this.worker.unref();
    this.exited = new Promise((resolve) => this.worker.once('exit', () => resolve()));
  }

  /**
   * Checkpoint errors (reported, never fatal: the backstop threshold still bounds the WAL); one
   * that repeats, at most once a minute.
   */
  onError(listener: (message: string) => void): void {
    this.worker.on('message', (m: unknown) => {
      if (typeof m === 'string') listener(m);
    });
    this.worker.on('error', (err) => listener(err.message));
  }

  /**
   * The WAL holds `restartPages` frames and the worker no longer holds it: the listener should run
   * a PASSIVE checkpoint on the writer's connection, so that its next commit restarts the WAL.
   */
  onRestartWanted(listener: () => void): void {
    this.worker.on('message', (m: unknown) => {
      if (typeof m === 'object' && m !== null && 'restart' in m) listener();
    });
  }

  /** A checkpoint worked again after a failure reported to `onError` (given its message). */
  onRecovery(listener: (failure: string) => void): void {
    this.worker.on('message', (m: unknown) => {
      if (typeof m === 'object' && m !== null && 'recovered' in m) listener(String(m.recovered));
    });
  }

  async stop(): Promise<void> {
    this.worker.ref(); // keep the event loop alive until the worker has closed its connections
    this.worker.postMessage('stop');
    // Cleared once the worker has exited: a pending timer would hold the process up to 2 s more.
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([this.exited, new Promise((r) => (timer = setTimeout(r, 2000)))]);
    clearTimeout(timer);
    await this.worker.terminate();
  }
}
