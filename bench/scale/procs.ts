import { spawn, type ChildProcess } from 'node:child_process';
import { createInterface } from 'node:readline';
import { REPO_ROOT } from '../lib/child.js';

/**
 * The processes as operators run them: API replicas (npm start's src/main.ts) and workers (npm
 * run worker's src/worker.ts), each started as `node --import tsx <entry>` (what those scripts
 * run, without npm's own process in between, so that the pid is the server's). Their own
 * configuration variables are not inherited from this shell: each gets exactly the settings
 * the section gives it. What they print is read line by line as it comes (a pipe that is not
 * drained would block them): the workers' "running the job" lines are kept with their times.
 *
 * Every process started here is tracked; stopAll() stops them (SIGTERM, then SIGKILL after a
 * while), and if this process exits first anything left is SIGKILLed.
 */

const CONFIG_VAR =
  /^(PORT|HOST|DATA_DIR|DATABASE_URL|PUBLIC_URL|LOG_LEVEL|LOG_FORMAT|JOB_RETENTION|ENGINE|MODELS_DIR|GRAPHIQL|STUDIO|METRICS_PORT)$|^(RETENTION_|LOCAL_|SQLITE_|IMAGE_|WEBHOOK_|IMAGEPIPELINE_|POLL_|DISPATCH_|RATE_LIMIT_|MAX_|GRAPHQL_MAX_|WS_|SHUTDOWN_|AWS_|S3_|REDIS_|WORKER_|QUEUE_)/;
/** Warnings every process here gives by design (no MODELS_DIR: the tiny models): not problems. */
const EXPECTED = /TINY RANDOM TEST MODELS/;
const KEY = /^sdk_[A-Za-z0-9_-]{43}$/;

export interface Proc {
  label: string;
  pid: number;
  child: ChildProcess;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  hasExited(): boolean;
  /** Log lines at warn (40) or above, and anything on stderr. */
  problems: string[];
  /** The last lines printed (for an error message). */
  tail(): string;
  /** SIGTERM, then SIGKILL after timeoutMs; resolves once it exited. */
  stop(timeoutMs?: number): Promise<{ code: number | null; signal: NodeJS.Signals | null; ms: number; killed: boolean }>;
}

export interface ApiProc extends Proc {
  url: string;
  /** The key printed on a first start (the first API process on a fresh database), else null. */
  firstKey: string | null;
}

export interface WorkerProc extends Proc {
  /** Job id -> when this worker logged that it runs it (epoch ms, the log line's own time). */
  taken: Map<string, number>;
  /** Job id -> when it logged "job finished" (just after publishing the job's end). */
  ended: Map<string, number>;
}

const live = new Set<Proc>();
const killLive = () => {
  for (const p of live) if (!p.hasExited()) p.child.kill('SIGKILL');
};
process.once('exit', killLive);

/** What to undo if this process is interrupted (the schema, the prefix, the folder): run after the kill, at most 10 s. */
const undo = new Set<() => Promise<unknown>>();
export function atInterrupt(fn: () => Promise<unknown>): () => void {
  undo.add(fn);
  return () => undo.delete(fn);
}

let signalsHandled = false;
/** Interrupted or killed with SIGTERM, this process takes its servers and workers with it (none has an IPC channel to notice). */
function handleSignals(): void {
  if (signalsHandled) return;
  signalsHandled = true;
  for (const [signal, n] of [
    ['SIGINT', 2],
    ['SIGTERM', 15],
    ['SIGHUP', 1],
  ] as const) {
    process.once(signal, () => {
      process.stderr.write(`[bench] ${signal}: killing ${live.size} server and worker processes, removing what the run made\n`);
      killLive();
      const cleanups = Promise.allSettled([...undo].map((fn) => fn()));
      void Promise.race([cleanups, new Promise((resolve) => setTimeout(resolve, 10_000).unref())]).then(() => process.exit(128 + n));
    });
  }
}

function cleanEnv(env: Record<string, string>): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(process.env)) if (v !== undefined && !CONFIG_VAR.test(k)) out[k] = v;
  return { ...out, ...env };
}

interface Started {
  proc: Proc;
  lines: ReturnType<typeof createInterface>;
  failed: Promise<never>;
}

function start(label: string, entry: string, env: Record<string, string>, onLine: (line: string) => void): Started {
  handleSignals();
  const child = spawn(process.execPath, ['--import', 'tsx', entry], {
    cwd: REPO_ROOT,
    env: cleanEnv(env),
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let exitedFlag = false;
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    child.once('exit', (code, signal) => {
      exitedFlag = true;
      live.delete(proc);
      resolve({ code, signal });
    }),
  );
  const recent: string[] = [];
  const problems: string[] = [];
  const remember = (line: string) => {
    recent.push(line);
    if (recent.length > 40) recent.shift();
  };
  createInterface({ input: child.stderr! }).on('line', (line) => {
    remember(line);
    if (line.trim() && problems.length < 20) problems.push(`stderr: ${line.slice(0, 300)}`);
  });
  const lines = createInterface({ input: child.stdout! });
  lines.on('line', (line) => {
    remember(line);
    if (line.startsWith('{')) {
      try {
        const level = (JSON.parse(line) as { level?: number }).level ?? 0;
        if (level >= 40 && !EXPECTED.test(line) && problems.length < 20) problems.push(line.slice(0, 300));
      } catch {
        // not a log line
      }
    }
    onLine(line);
  });
  const proc: Proc = {
    label,
    pid: child.pid!,
    child,
    exited,
    hasExited: () => exitedFlag,
    problems,
    tail: () => recent.join('\n'),
    async stop(timeoutMs = 15_000) {
      const t0 = performance.now();
      if (exitedFlag) return { ...(await exited), ms: 0, killed: false };
      child.kill('SIGTERM');
      let killed = false;
      const timer = setTimeout(() => {
        killed = true;
        child.kill('SIGKILL');
      }, timeoutMs);
      const end = await exited;
      clearTimeout(timer);
      return { ...end, ms: Math.round(performance.now() - t0), killed };
    },
  };
  live.add(proc);
  const failed = exited.then(({ code, signal }) => {
    throw new Error(`${label} (${entry}) exited (code ${code}, signal ${signal}) before it was ready:\n${proc.tail()}`);
  });
  failed.catch(() => {});
  return { proc, lines, failed };
}

async function ready<T>(s: Started, what: Promise<T>, timeoutMs: number): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${s.proc.label} not ready in ${timeoutMs} ms:\n${s.proc.tail()}`)), timeoutMs);
  });
  try {
    return await Promise.race([what, s.failed, timeout]);
  } catch (err) {
    await s.proc.stop(2_000);
    throw err;
  } finally {
    clearTimeout(timer);
  }
}

export async function startApi(label: string, env: Record<string, string>, timeoutMs = 120_000): Promise<ApiProc> {
  let firstKey: string | null = null;
  let resolveUrl!: (url: string) => void;
  const url = new Promise<string>((resolve) => (resolveUrl = resolve));
  const s = start(label, 'src/main.ts', env, (line) => {
    if (KEY.test(line)) firstKey = line;
    const m = /GraphQL API and GraphiQL at (http:\/\/\S+)\/graphql/.exec(line);
    if (m) resolveUrl(m[1]!);
  });
  const u = await ready(s, url, timeoutMs);
  return Object.assign(s.proc, { url: u, firstKey });
}

export async function startWorker(label: string, env: Record<string, string>, timeoutMs = 60_000): Promise<WorkerProc> {
  const taken = new Map<string, number>();
  const ended = new Map<string, number>();
  let resolveReady!: () => void;
  const up = new Promise<void>((resolve) => (resolveReady = resolve));
  const s = start(label, 'src/worker.ts', env, (line) => {
    if (line.startsWith('Worker pulling jobs')) return resolveReady();
    if (!line.startsWith('{"level":30')) return;
    try {
      const l = JSON.parse(line) as { msg?: string; jobId?: string; time?: string | number };
      if (!l.jobId) return;
      const at = typeof l.time === 'number' ? l.time : Date.parse(String(l.time));
      if ((l.msg === 'running the job' || l.msg === 'taking the job over') && !taken.has(l.jobId)) taken.set(l.jobId, at);
      else if (l.msg === 'job finished') ended.set(l.jobId, at);
    } catch {
      // not a log line
    }
  });
  await ready(s, up, timeoutMs);
  return Object.assign(s.proc, { taken, ended });
}

/** Stops every process still running (workers first, then API replicas), in parallel within each group. */
export async function stopAll(): Promise<{ label: string; ms: number; killed: boolean; code: number | null }[]> {
  const procs = [...live];
  const workers = procs.filter((p) => 'taken' in p);
  const rest = procs.filter((p) => !('taken' in p));
  const out: { label: string; ms: number; killed: boolean; code: number | null }[] = [];
  for (const group of [workers, rest]) {
    const ends = await Promise.all(group.map(async (p) => ({ label: p.label, ...(await p.stop()) })));
    out.push(...ends.map((e) => ({ label: e.label, ms: e.ms, killed: e.killed, code: e.code })));
  }
  return out;
}
