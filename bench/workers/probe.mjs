// Preloaded into a server process under test (NODE_OPTIONS=--import=<this file> or execArgv):
// on SIGUSR2 it collects garbage (when --expose-gc is on) and writes one line to stderr:
//   @@probe {"rss":…,"heapUsed":…,"heapTotal":…,"external":…,"arrayBuffers":…,"user":…,"system":…}
// so the bench can read heap figures of a process it does not control (our server), the same way
// for every server. Plain JS: it must load before any TypeScript loader.
// With RTM_BENCH_V8_FLAGS set: V8 flags that NODE_OPTIONS refuses (e.g. --no-parallel-scavenge),
// set before the process allocates much, to try GC settings on a server under test.
if (process.env.RTM_BENCH_V8_FLAGS) {
  const { setFlagsFromString } = await import('node:v8');
  for (const flag of process.env.RTM_BENCH_V8_FLAGS.split(/\s+/).filter(Boolean)) setFlagsFromString(flag);
}
const snapshotDir = process.env.RTM_BENCH_HEAP_SNAPSHOT_DIR;
let snapshots = 0;
process.on('SIGUSR2', async () => {
  if (typeof globalThis.gc === 'function') {
    globalThis.gc();
    globalThis.gc();
  }
  // With RTM_BENCH_HEAP_SNAPSHOT_DIR set: a heap snapshot at every probe (summarise with heap-top.ts).
  if (snapshotDir) {
    const { writeHeapSnapshot } = await import('node:v8');
    const { mkdirSync } = await import('node:fs');
    mkdirSync(snapshotDir, { recursive: true });
    writeHeapSnapshot(`${snapshotDir}/server-${process.pid}-${++snapshots}.heapsnapshot`);
  }
  const m = process.memoryUsage();
  const c = process.cpuUsage();
  process.stderr.write(
    `@@probe ${JSON.stringify({ rss: m.rss, heapUsed: m.heapUsed, heapTotal: m.heapTotal, external: m.external, arrayBuffers: m.arrayBuffers, user: c.user, system: c.system })}\n`,
  );
});

/**
 * An inspector profile of the whole process life, written to `<dir>/server-<pid>.<ext>` at exit
 * (`--cpu-prof` is not allowed in NODE_OPTIONS). The in-thread session answers synchronously.
 */
async function profileUntilExit(dir, ext, start, stopMethod) {
  const { Session } = await import('node:inspector');
  const { writeFileSync, mkdirSync } = await import('node:fs');
  const session = new Session();
  session.connect();
  start(session);
  process.once('exit', () => {
    session.post(stopMethod, (err, result) => {
      if (err) return;
      mkdirSync(dir, { recursive: true });
      writeFileSync(`${dir}/server-${process.pid}.${ext}`, JSON.stringify(result.profile));
    });
  });
}

// With RTM_BENCH_CPU_PROF_DIR set: a CPU profile (summarise with cpuprofile-top.ts).
if (process.env.RTM_BENCH_CPU_PROF_DIR) {
  await profileUntilExit(
    process.env.RTM_BENCH_CPU_PROF_DIR,
    'cpuprofile',
    (session) => {
      session.post('Profiler.setSamplingInterval', { interval: 200 });
      session.post('Profiler.enable');
      session.post('Profiler.start');
    },
    'Profiler.stop',
  );
}

// With RTM_BENCH_HEAP_SAMPLING_DIR set: a sampling heap profile, where the process allocates by
// call site (summarise with heapprofile-top.ts). Every 4 KiB on average; objects collected since
// are kept (what is allocated, not what is retained). With RTM_BENCH_HEAP_SAMPLING=survivors, only
// what outlived the young generation (promoted, or alive at exit): what makes scavenges slow.
if (process.env.RTM_BENCH_HEAP_SAMPLING_DIR) {
  await profileUntilExit(
    process.env.RTM_BENCH_HEAP_SAMPLING_DIR,
    'heapprofile',
    (session) => {
      session.post('HeapProfiler.startSampling', {
        samplingInterval: 4096,
        includeObjectsCollectedByMajorGC: true,
        includeObjectsCollectedByMinorGC: process.env.RTM_BENCH_HEAP_SAMPLING !== 'survivors',
      });
    },
    'HeapProfiler.stopSampling',
  );
}

// With RTM_BENCH_LOOP_STATS set: at exit, one line with the event loop's delay histogram and the
// GC pauses (longest first; RTM_BENCH_LOOP_STATS_GCS of them, default 8), to tell server stalls
// from client-side or machine noise.
if (process.env.RTM_BENCH_LOOP_STATS) {
  const { monitorEventLoopDelay, PerformanceObserver } = await import('node:perf_hooks');
  const h = monitorEventLoopDelay({ resolution: 1 });
  h.enable();
  const gcs = [];
  new PerformanceObserver((list) => {
    for (const e of list.getEntries()) gcs.push({ at: Math.round(e.startTime), ms: +e.duration.toFixed(2), kind: e.detail?.kind });
  }).observe({ entryTypes: ['gc'] });
  const ms = (ns) => +(ns / 1e6).toFixed(2);
  process.once('exit', () => {
    gcs.sort((a, b) => b.ms - a.ms);
    const total = gcs.reduce((s, g) => s + g.ms, 0);
    process.stderr.write(
      `@@loop ${JSON.stringify({ p50: ms(h.percentile(50)), p99: ms(h.percentile(99)), p999: ms(h.percentile(99.9)), max: ms(h.max), gcCount: gcs.length, gcTotalMs: +total.toFixed(1), longestGc: gcs.slice(0, Number(process.env.RTM_BENCH_LOOP_STATS_GCS ?? 8)) })}\n`,
    );
  });
}

// With RTM_BENCH_SEND_TRACE=<file> (our server only): when each send started and when its message
// was stored, from the send path's diagnostics channels (packages/server/src/observability/
// channels.ts), in ms since the epoch, written at exit as JSON { body: [received, stored] } keyed by
// the message body (the latency bench sends its send time as the body). Measures where slow
// messages waited: before the server took them, in it, or after (bench/workers/send-trace.ts).
if (process.env.RTM_BENCH_SEND_TRACE) {
  const { subscribe } = await import('node:diagnostics_channel');
  const { writeFileSync } = await import('node:fs');
  const now = () => performance.timeOrigin + performance.now();
  // Weak: refused sends are never stored, and a send to several receivers is stored several times.
  const started = new WeakMap();
  const times = {};
  subscribe('rtm:send:received', (request) => started.set(request, now()));
  subscribe('rtm:send:stored', ({ request, message }) => {
    const at = started.get(request);
    if (at !== undefined && typeof message.msg === 'string') times[message.msg] = [at, now()];
  });
  process.once('exit', () => writeFileSync(process.env.RTM_BENCH_SEND_TRACE, JSON.stringify(times)));
}
