import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { sleep } from '../lib/load.js';
import { makeImages } from './inputs.js';
import { closeLoad, createLoad, startLoad, type LoadContext } from './load.js';
import { heapSnapshotDir, LIMITS, soakOptionsFromEnv, type SoakOptions } from './options.js';
import { fmt } from './report.js';
import { soakResult, type SoakResult } from './result.js';
import { MemorySampler, procCpuSeconds, procStatus } from './sampler.js';
import { createKeys, startServer, type ServerProc } from './server.js';
import { drain, verify } from './verify.js';

/** The soak from start to end: server, keys, load, drain, verification, graceful stop, figures. */
export async function runSoak(options: SoakOptions = soakOptionsFromEnv(), log: (line: string) => void = console.log): Promise<SoakResult> {
  const dataDir = mkdtempSync(path.join(os.tmpdir(), 'sd-api-soak-'));
  const t0 = performance.now();
  const at = () => (performance.now() - t0) / 1000;
  let server: ServerProc | null = null;
  let load: LoadContext | null = null;
  let sampler: MemorySampler | null = null;
  let progress: NodeJS.Timeout | undefined;
  try {
    log(
      `  starting src/main.ts: ENGINE=local (tiny models, generated under DATA_DIR), LOCAL_CONCURRENCY=1, LOG_LEVEL=warn, ` +
        `limits ${Object.entries(LIMITS)
          .map(([k, v]) => `${k}=${v}`)
          .join(' ')}`,
    );
    server = await startServer(dataDir);
    const startupMs = performance.now() - t0;
    const srv = server;
    const mem = (sampler = new MemorySampler(srv, at));
    await mem.sample();

    const keys = [srv.firstKey, ...(await createKeys(srv.env, options.keys - 1))];
    log(
      `  server ready in ${fmt(startupMs / 1000, 1)} s at ${srv.url} (pid ${srv.pid}); ${keys.length} keys (first-start key + ${keys.length - 1} from \`npm run keys -- create\`)`,
    );
    const ctx = (load = createLoad(srv.url, keys, options, await makeImages()));
    const { ledger, control } = ctx;

    // Load.
    mem.phase = 'load';
    await mem.sample();
    mem.every(options.sampleMs);
    const loadStart = at();
    const loadStartCpu = procCpuSeconds(srv.pid);
    const loops = startLoad(ctx);
    progress = setInterval(() => {
      const last = mem.samples.at(-1);
      log(
        `  [${fmt(at() - loadStart)} s] accepted ${ledger.jobs.size}, follow-ups in flight ${control.followUps.size}, ` +
          `server rss ${fmt(last?.rssMb ?? NaN)} MB, heap ${fmt(last?.heapMb ?? NaN)} MB`,
      );
    }, 30_000);
    let stopping = false;
    const watchdog = srv.exited.then(() => {
      if (stopping) return;
      ledger.problem('the server exited during the soak');
      control.stopLoad = true;
    });
    const snapshotDir = heapSnapshotDir();
    const snapshot = async (name: string) => {
      if (!snapshotDir) return;
      const file = await srv.snapshot(path.resolve(snapshotDir, `soak-${name}.heapsnapshot`));
      log(`  heap snapshot: ${file ?? 'FAILED'}`);
    };
    if (snapshotDir) {
      await Promise.race([sleep(options.durationMs / 3), watchdog]);
      await snapshot('a-third');
      await Promise.race([sleep(loadStart * 1000 + options.durationMs - at() * 1000), watchdog]);
    } else await Promise.race([sleep(options.durationMs), watchdog]);
    await snapshot('load-end');
    control.stopLoad = true;
    const loadMs = (at() - loadStart) * 1000;
    const loadEndCpu = procCpuSeconds(srv.pid);
    mem.phase = 'drain';
    control.drainDeadline = Date.now() + options.drainMs;
    log(
      `  load stopped after ${fmt(loadMs / 1000, 1)} s: ${ledger.jobs.size} jobs accepted; waiting for every job to end (at most ${fmt(options.drainMs / 1000)} s)`,
    );

    const { drained, drainMs } = await drain(ctx, loops, () => srv.hasExited(), log);
    log(
      `  drain ${drained ? 'complete' : 'INCOMPLETE'} in ${fmt(drainMs / 1000, 1)} s; verifying ${ledger.jobs.size} jobs and downloading their images`,
    );
    const verification = await verify(ctx);
    clearInterval(progress);
    mem.stop();
    mem.phase = 'end';
    await mem.sample();
    await closeLoad(ctx);

    // Stop the server with SIGTERM, its graceful stop; a crash before this point is reported.
    const peakRssMb = procStatus(srv.pid)?.hwmMb ?? null;
    const stopStarted = performance.now();
    const crashed = srv.hasExited();
    stopping = true;
    srv.proc.kill('SIGTERM');
    const exit = await Promise.race([srv.exited, sleep(20_000).then(() => null)]);
    if (!exit) srv.proc.kill('SIGKILL');
    const exitInfo = exit ?? (await srv.exited);
    const stopMs = performance.now() - stopStarted;

    return soakResult({
      options,
      startupMs,
      loadStartS: loadStart,
      loadMs,
      loadCpuS: loadEndCpu - loadStartCpu,
      drained,
      drainMs,
      ledger,
      verification,
      samples: mem.samples,
      peakRssMb,
      serverLog: srv.log,
      stop: { exitCode: exitInfo.code, signal: exitInfo.signal, ms: stopMs, crashed },
    });
  } finally {
    clearInterval(progress); // also on a failure, or its timer would keep the process alive
    sampler?.stop();
    if (load) {
      load.control.stopLoad = true;
      load.control.drainDeadline = 0;
      await closeLoad(load).catch(() => {});
    }
    if (server && !server.hasExited()) {
      server.proc.kill('SIGTERM');
      await Promise.race([server.exited, sleep(20_000)]);
      if (!server.hasExited()) server.proc.kill('SIGKILL');
    }
    rmSync(dataDir, { recursive: true, force: true });
  }
}
