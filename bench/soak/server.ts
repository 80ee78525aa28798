import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { createWriteStream } from 'node:fs';
import { createInterface } from 'node:readline';
import { promisify } from 'node:util';
import { REPO_ROOT } from '../lib/child.js';
import { LIMITS, serverLogFile } from './options.js';

/**
 * The real server (src/main.ts, run as operators run it) in its own process, with the local
 * engine on its tiny models and bench/servers/soak-probe.mjs preloaded: the probe answers memory
 * (after a full GC) and heap-snapshot requests over the IPC channel without touching the app.
 */

/** The server's own configuration variables are not inherited from this shell (ORT_* excepted). */
const SERVER_VAR =
  /^(PORT|HOST|DATA_DIR|PUBLIC_URL|LOG_LEVEL|GRAPHIQL|SQLITE_|SHUTDOWN_|ENGINE|MODELS_DIR|LOCAL_|IMAGE_FETCH_|IMAGEPIPELINE_|POLL_|DISPATCH_|RATE_LIMIT_|MAX_|GRAPHQL_MAX_|WS_)/;

const KEY = /^sdk_[A-Za-z0-9_-]{43}$/;

export interface ServerLog {
  warn: number;
  error: number;
  samples: string[];
}

export interface ServerProc {
  proc: ChildProcess;
  pid: number;
  url: string;
  firstKey: string;
  env: Record<string, string>;
  exited: Promise<{ code: number | null; signal: string | null }>;
  hasExited(): boolean;
  mem(): Promise<{ rss: number; heapUsed: number; external: number } | null>;
  /** Writes a heap snapshot of the server's main thread; resolves to its path. */
  snapshot(file: string): Promise<string | null>;
  log: ServerLog;
}

export async function startServer(dataDir: string, startTimeoutMs = 180_000): Promise<ServerProc> {
  const env: Record<string, string> = {};
  for (const [k, v] of Object.entries(process.env)) if (v !== undefined && !SERVER_VAR.test(k)) env[k] = v;
  Object.assign(env, {
    DATA_DIR: dataDir,
    PORT: '0',
    HOST: '127.0.0.1',
    ENGINE: 'local',
    LOCAL_CONCURRENCY: '1',
    LOG_LEVEL: 'warn',
    ...LIMITS,
  });
  const proc = spawn(process.execPath, ['--expose-gc', '--import', 'tsx', '--import', './bench/servers/soak-probe.mjs', 'src/main.ts'], {
    cwd: REPO_ROOT,
    env,
    stdio: ['ignore', 'pipe', 'pipe', 'ipc'],
  });
  let exitedFlag = false;
  const exited = new Promise<{ code: number | null; signal: string | null }>((resolve) =>
    proc.once('exit', (code, signal) => {
      exitedFlag = true;
      resolve({ code, signal });
    }),
  );
  const log: ServerLog = { warn: 0, error: 0, samples: [] };
  const logLine = serverLogCounter(log);
  createInterface({ input: proc.stderr! }).on('line', (line) => logLine(line, true));
  const logFile = serverLogFile();
  if (logFile) {
    const out = createWriteStream(logFile, { flags: 'a' });
    proc.stdout!.pipe(out);
    proc.stderr!.pipe(out);
  }
  const ask = probeChannel(proc, () => exitedFlag);

  // Ready when it prints its URL; on a fresh DATA_DIR it prints the first-start key just before.
  let output = '';
  const ready = await new Promise<{ url: string; key: string }>((resolve, reject) => {
    let key = '';
    const timer = setTimeout(() => reject(new Error(`the server did not start in ${startTimeoutMs} ms:\n${output}`)), startTimeoutMs);
    void exited.then(({ code }) => {
      clearTimeout(timer);
      reject(new Error(`the server exited (${code}) before listening:\n${output}\n${log.samples.join('\n')}`));
    });
    createInterface({ input: proc.stdout! }).on('line', (line) => {
      logLine(line, false);
      if (line.startsWith('{')) return;
      output += `${line}\n`;
      if (KEY.test(line)) key = line;
      const m = /GraphQL API and GraphiQL at (http:\/\/\S+)\/graphql/.exec(line);
      if (m) {
        clearTimeout(timer);
        if (!key) reject(new Error(`the server printed no first-start key (DATA_DIR not fresh?):\n${output}`));
        else resolve({ url: m[1]!, key });
      }
    });
  }).catch(async (err: unknown) => {
    if (!exitedFlag) proc.kill('SIGKILL');
    await exited;
    throw err;
  });

  return {
    proc,
    pid: proc.pid!,
    url: ready.url,
    firstKey: ready.key,
    env,
    exited,
    hasExited: () => exitedFlag,
    log,
    mem: () => ask<{ rss: number; heapUsed: number; external: number }>('mem', undefined, 10_000),
    snapshot: (file: string) => ask<string>('snapshot', file, 120_000),
  };
}

/**
 * Counts warnings and errors in what the server prints: pino's JSON lines on stdout by level;
 * anything on stderr (a crash trace, a Node warning) is an error.
 */
function serverLogCounter(log: ServerLog) {
  return (line: string, stderr: boolean) => {
    let level = 0;
    if (line.startsWith('{')) {
      try {
        level = (JSON.parse(line) as { level?: number }).level ?? 0;
      } catch {
        level = 0;
      }
    }
    // A multi-line message on stderr (a stack trace) counts once: its continuation lines are indented.
    if (stderr && /^[\s}]/.test(line)) return;
    if (stderr && line.trim()) level = Math.max(level, 50);
    if (level >= 50) log.error++;
    else if (level >= 40) log.warn++;
    if (level >= 40 && log.samples.length < 20) log.samples.push(line.slice(0, 400));
  };
}

/** Requests to the probe over IPC; each resolves to null when it does not answer in time (or the server is gone). */
function probeChannel(proc: ChildProcess, hasExited: () => boolean) {
  const pending = new Map<number, (v: unknown) => void>();
  let nextId = 1;
  proc.on('message', (raw) => {
    const msg = raw as { id: number; result?: unknown };
    pending.get(msg.id)?.(msg.result ?? null);
    pending.delete(msg.id);
  });
  return <T>(cmd: string, args: unknown, timeoutMs: number): Promise<T | null> => {
    if (hasExited() || !proc.connected) return Promise.resolve(null);
    const id = nextId++;
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        pending.delete(id);
        resolve(null);
      }, timeoutMs);
      pending.set(id, (v) => {
        clearTimeout(timer);
        resolve(v as T);
      });
      proc.send({ id, cmd, args });
    });
  };
}

/** `count` more keys, made the way operators make them (`npm run keys -- create`), 4 at a time. */
export async function createKeys(env: Record<string, string>, count: number): Promise<string[]> {
  const run = promisify(execFile);
  const keys: string[] = new Array<string>(count);
  let next = 0;
  const worker = async () => {
    while (next < count) {
      const i = next++;
      const { stdout } = await run('npm', ['run', '--silent', 'keys', '--', 'create', '--name', `soak-${i + 1}`], { cwd: REPO_ROOT, env });
      const key = stdout.trim().split('\n').at(-1)?.trim() ?? '';
      if (!KEY.test(key)) throw new Error(`keys create printed no key: ${stdout}`);
      keys[i] = key;
    }
  };
  await Promise.all(Array.from({ length: Math.min(4, count) }, worker));
  return keys;
}
