import { spawn, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import path from 'node:path';
import { createInterface } from 'node:readline';

/**
 * Benchmark servers run in their own processes, so that the load generator's CPU and memory are
 * never charged to the server under test. A child is started as
 *   node --expose-gc --import tsx bench/servers/<name>.ts
 * prints one JSON line on stdout when it is ready (its URL and so on), and answers requests over
 * the IPC channel: { id, cmd, args } -> { id, result } | { id, error }.
 */

export const REPO_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');

export interface Child<Ready> {
  ready: Ready;
  pid: number;
  request<T = unknown>(cmd: string, args?: unknown, timeoutMs?: number): Promise<T>;
  /**
   * Asks the child to stop cleanly and resolves to what its stop handler answered; kills this
   * child (by its own handle) if it does not exit in time.
   */
  stop(timeoutMs?: number): Promise<unknown>;
}

export async function startChild<Ready>(script: string, env: Record<string, string> = {}, startTimeoutMs = 30_000): Promise<Child<Ready>> {
  // BENCH_NODE_ARGS: extra node flags for the children, e.g. "--cpu-prof --cpu-prof-dir=/tmp/prof".
  const extra = process.env.BENCH_NODE_ARGS?.split(/\s+/).filter(Boolean) ?? [];
  const proc: ChildProcess = spawn(process.execPath, [...extra, '--expose-gc', '--import', 'tsx', script], {
    cwd: REPO_ROOT,
    env: { ...process.env, ...env },
    stdio: ['ignore', 'pipe', 'inherit', 'ipc'],
  });
  const pending = new Map<number, { resolve: (v: unknown) => void; reject: (e: Error) => void }>();
  let nextId = 1;
  let exited = false;
  const exit = new Promise<void>((resolve) =>
    proc.once('exit', (code, signal) => {
      exited = true;
      for (const p of pending.values()) p.reject(new Error(`${script} exited (code ${code}, signal ${signal})`));
      pending.clear();
      resolve();
    }),
  );
  proc.on('message', (raw) => {
    const msg = raw as { id: number; result?: unknown; error?: string };
    const p = pending.get(msg.id);
    if (!p) return;
    pending.delete(msg.id);
    if (msg.error !== undefined) p.reject(new Error(`${script}: ${msg.error}`));
    else p.resolve(msg.result);
  });

  const lines = createInterface({ input: proc.stdout! });
  const ready = await new Promise<Ready>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`${script} did not become ready in ${startTimeoutMs} ms`)), startTimeoutMs);
    void exit.then(() => {
      clearTimeout(timer);
      reject(new Error(`${script} exited before it was ready`));
    });
    lines.on('line', (line) => {
      if (!line.startsWith('{')) return void process.stderr.write(`[${path.basename(script)}] ${line}\n`);
      try {
        const value = JSON.parse(line) as Ready;
        clearTimeout(timer);
        resolve(value);
      } catch {
        process.stderr.write(`[${path.basename(script)}] ${line}\n`);
      }
    });
  }).catch(async (err: unknown) => {
    if (!exited) proc.kill('SIGKILL');
    await exit;
    throw err;
  });

  return {
    ready,
    pid: proc.pid!,
    request<T>(cmd: string, args?: unknown, timeoutMs = 60_000): Promise<T> {
      if (exited) return Promise.reject(new Error(`${script} has exited`));
      const id = nextId++;
      return new Promise<T>((resolve, reject) => {
        const timer = setTimeout(() => {
          pending.delete(id);
          reject(new Error(`${script}: "${cmd}" got no answer in ${timeoutMs} ms`));
        }, timeoutMs);
        pending.set(id, {
          resolve: (v) => {
            clearTimeout(timer);
            resolve(v as T);
          },
          reject: (e) => {
            clearTimeout(timer);
            reject(e);
          },
        });
        proc.send({ id, cmd, args });
      });
    },
    async stop(timeoutMs = 15_000) {
      if (exited) return undefined;
      const id = nextId++;
      let answer: unknown;
      pending.set(id, { resolve: (v) => (answer = v), reject: () => {} });
      proc.send({ id, cmd: 'stop' });
      const timer = setTimeout(() => {
        if (!exited) {
          process.stderr.write(`[bench] ${script} did not stop in ${timeoutMs} ms; killing pid ${proc.pid}\n`);
          proc.kill('SIGKILL');
        }
      }, timeoutMs);
      await exit;
      clearTimeout(timer);
      lines.close();
      return answer;
    },
  };
}

/** The child side: answers IPC requests with the given handlers; 'stop' runs onStop, answers, exits. */
export function serveIpc(handlers: Record<string, (args: unknown) => unknown>, onStop: () => Promise<unknown>): void {
  let stopping = false;
  const stop = (id: number | null) => {
    if (stopping) return;
    stopping = true;
    void onStop().then(
      (result) => (id !== null && process.connected ? process.send!({ id, result }, () => process.exit(0)) : process.exit(0)),
      (err: unknown) => {
        process.stderr.write(`stop failed: ${String(err)}\n`);
        process.exit(1);
      },
    );
  };
  process.on('message', (raw) => {
    const { id, cmd, args } = raw as { id: number; cmd: string; args?: unknown };
    if (cmd === 'stop') return stop(id);
    const handler = handlers[cmd];
    if (!handler) return void process.send!({ id, error: `unknown command ${cmd}` });
    Promise.resolve()
      .then(() => handler(args))
      .then(
        (result) => process.send!({ id, result }),
        (err: unknown) => process.send!({ id, error: err instanceof Error ? (err.stack ?? err.message) : String(err) }),
      );
  });
  // If the parent dies, do not linger.
  process.on('disconnect', () => stop(null));
}

export interface CpuSample {
  userMs: number;
  systemMs: number;
  atMs: number;
}

export function cpuSample(): CpuSample {
  const u = process.cpuUsage();
  return { userMs: u.user / 1000, systemMs: u.system / 1000, atMs: performance.timeOrigin + performance.now() };
}

/** Share of one core used between two samples, in percent. */
export function cpuPercent(a: CpuSample, b: CpuSample): number {
  const wall = b.atMs - a.atMs;
  return wall > 0 ? ((b.userMs + b.systemMs - a.userMs - a.systemMs) / wall) * 100 : 0;
}
