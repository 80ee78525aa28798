/**
 * Preloaded into the real server process by the soak (bench/soak/server.ts):
 *   node --expose-gc --import tsx --import ./bench/servers/soak-probe.mjs src/main.ts
 * so that src/main.ts runs exactly as operators run it, while the parent can ask, over the IPC
 * channel, for the process's memory after a full GC: { id, cmd: 'mem' } -> { id, result }.
 * Touches nothing of the app. Plain JavaScript, and a no-op outside the main thread: worker
 * threads (the local engine's generation threads) inherit --import but not always tsx's loader.
 * The channel is unref'd (it never keeps the server alive) and, if the parent goes away, the
 * server is sent SIGTERM (its own graceful stop) rather than left behind.
 */
import { writeHeapSnapshot } from 'node:v8';
import { isMainThread } from 'node:worker_threads';

const gc = globalThis.gc;

if (isMainThread && process.send) {
  process.on('message', (raw) => {
    const { id, cmd, args } = raw;
    if (cmd === 'snapshot') {
      // A heap snapshot (for BENCH_SOAK_HEAP_SNAPSHOTS=DIR): where the main thread's memory is.
      gc?.();
      return void process.send({ id, result: writeHeapSnapshot(args) });
    }
    if (cmd !== 'mem') return void process.send({ id, error: `unknown command ${cmd}` });
    // Twice, with a turn of the event loop between, so that finalizers and weak callbacks run.
    gc?.();
    setImmediate(() => {
      gc?.();
      const m = process.memoryUsage();
      process.send({
        id,
        result: {
          rss: m.rss,
          heapUsed: m.heapUsed,
          heapTotal: m.heapTotal,
          external: m.external,
          arrayBuffers: m.arrayBuffers,
          gc: Boolean(gc),
        },
      });
    });
  });
  process.channel?.unref();
  process.on('disconnect', () => process.kill(process.pid, 'SIGTERM'));
}
