import { randomInt } from 'node:crypto';
import { existsSync, mkdtempSync, readdirSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import Database from 'better-sqlite3';
import sharp from 'sharp';
import { afterAll, describe, expect, it } from 'vitest';
import {
  InpaintingDocument,
  JobDocument,
  JobsDocument,
  ModelsDocument,
  Text2ImageDocument,
  type JobFieldsFragment,
  type JobsQuery,
  type JobsQueryVariables,
} from '../src/client/generated/graphql.js';
import { FakeImagePipeline } from './fixtures/fake-imagepipeline.js';
import {
  CrashableServer,
  freePort,
  gqlTimed,
  LatencyProxy,
  nextFileEvent,
  seededRandom,
  sleep,
  Submitter,
  type AcceptedJob,
  type JobRequest,
  type Mode,
  type Random,
} from './helpers/crash-harness.js';
import { startServerProcess, type ServerProcess } from './helpers/server-process.js';

/**
 * Crash recovery, end to end: the real server (src/main.ts) as a child process, killed with
 * SIGKILL at varied moments of a continuous stream of jobs (right after a burst of creates,
 * mid-generation, while an image is being written, while the engine call is in flight) and
 * started again each time on the same PORT and DATA_DIR. Afterwards every job the server ever
 * answered for must exist and be SUCCESS (with all its images served, as PNGs of the asked size
 * and number), FAILURE (with a code and a message) or CANCELED; nothing may stay PENDING or
 * PROCESSING; a state a client was once shown as final never changes; the database passes
 * integrity_check; the server answers /healthz and still stops gracefully.
 *
 * CRASH_SEED=<n> replays a run's random choices (timings still vary); CRASH_KEEP_DATA=1 keeps
 * the DATA_DIRs; TEST_LOG_LEVEL sets the servers' log level (default warn);
 * CRASH_FIRST_START_TARGET=<path under models/> picks the file whose appearance kills the first start.
 */

const SEED = Number(process.env.CRASH_SEED ?? randomInt(1, 2 ** 31 - 1));
const KEEP_DATA = process.env.CRASH_KEEP_DATA === '1';
const BASE_ENV = {
  HOST: '127.0.0.1',
  LOG_LEVEL: process.env.TEST_LOG_LEVEL ?? 'warn',
  // The stream of jobs is the test's, not a client to throttle; the active-jobs cap stays on.
  RATE_LIMIT_JOBS_PER_MINUTE: '0',
  POLL_MIN_INTERVAL_MS: '20',
  POLL_MAX_INTERVAL_MS: '200',
};
const TERMINAL = new Set(['SUCCESS', 'FAILURE', 'CANCELED']);
const PNG_SIGNATURE = Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);

interface KillContext {
  server: CrashableServer;
  submitter: Submitter;
  rnd: Random;
  imagesDir: string;
}

/** Waits for a moment to kill the server at; returns what that moment was. */
interface KillPlan {
  name: string;
  moment(ctx: KillContext): Promise<string>;
  /** SIGTERM first, SIGKILL this many ms later (drawn per kill): the kill lands inside a graceful stop. */
  termFirstMs?: [number, number];
}

interface Scenario {
  name: string;
  env: Record<string, string>;
  /** The first start may build the tiny models. */
  startTimeoutMs: number;
  request(rnd: Random, n: number): JobRequest;
  clients: number;
  pauseMs: [number, number];
  kills: KillPlan[];
  drainTimeoutMs: number;
  /** The pixel size every stored image must have. */
  imageSize(job: JobFieldsFragment): { width: number; height: number };
}

// ---------------------------------------------------------------------------------------------
// Kill moments

/** Event-triggered kills are armed 0-1200 ms after listening: some land in the resume of the previous run's jobs, some later. */
async function armAfterRandomDelay(rnd: Random): Promise<string> {
  const ms = rnd.int(0, 1200);
  await sleep(ms);
  return `armed ${ms} ms after listening`;
}

const afterDelay: KillPlan = {
  name: 'random delay',
  async moment({ rnd }) {
    const ms = rnd.int(150, 1500);
    await sleep(ms);
    return `${ms} ms after listening`;
  },
};

/** A supervisor that sends SIGTERM and loses patience: SIGKILL lands inside the graceful stop. */
const duringGracefulStop: KillPlan = {
  name: 'SIGKILL during a graceful stop',
  termFirstMs: [0, 60],
  async moment({ rnd }) {
    const ms = rnd.int(150, 1500);
    await sleep(ms);
    return `SIGTERM ${ms} ms after listening`;
  },
};

/** A burst of creates at once; killed just after the first is answered, while the rest are being inserted. */
const afterBurst: KillPlan = {
  name: 'burst of creates',
  async moment({ rnd, submitter }) {
    await sleep(rnd.int(150, 600));
    const n = rnd.int(6, 12);
    let answered!: () => void;
    const first = new Promise<void>((resolve) => (answered = resolve));
    for (let i = 0; i < n; i++) {
      void submitter.submit().then((o) => {
        if (o.kind === 'accepted') answered();
      });
    }
    const seen = await Promise.race([first.then(() => true), sleep(5_000).then(() => false)]);
    const ms = rnd.int(0, 15);
    await sleep(ms);
    return seen
      ? `${n} creates sent at once, killed ${ms} ms after the first was answered`
      : `${n} creates sent at once, none answered in 5 s`;
  },
};

/** Mid-generation: a job is PROCESSING with some denoising steps done (after 6 s of looking, any PROCESSING job will do). */
const whileProcessing: KillPlan = {
  name: 'while a job is PROCESSING',
  async moment({ server, rnd }) {
    const armed = await armAfterRandomDelay(rnd);
    const started = Date.now();
    while (Date.now() < started + 12_000) {
      const res = await gqlTimed(server.url, JobsDocument, { first: 5, filter: { status: ['PROCESSING'] } }, server.key, {
        timeoutMs: 5_000,
      }).catch(() => null);
      const running = res?.body.data?.jobs.edges.map((e) => e.node) ?? [];
      const job =
        running.find((j) => j.progress.step > 0 && j.progress.step < j.progress.totalSteps) ??
        (Date.now() > started + 6_000 ? running[0] : undefined);
      if (job) {
        const ms = rnd.int(0, 150);
        await sleep(ms);
        return `${armed}, job ${job.id.slice(0, 8)} PROCESSING (step ${job.progress.step}/${job.progress.totalSteps}), killed ${ms} ms later`;
      }
      await sleep(25);
    }
    return 'no job seen PROCESSING in 12 s; killed anyway';
  },
};

/** The image store is writing a result image right now (its temp file just appeared). */
const whileWritingImage: KillPlan = {
  name: 'while an image is being written',
  async moment({ imagesDir, rnd }) {
    const armed = await armAfterRandomDelay(rnd);
    const name = await nextFileEvent(imagesDir, (n) => n.endsWith('.tmp'), 12_000);
    return name ? `${armed}, temp file ${name.slice(0, 10)}….tmp just appeared` : 'no image write seen in 12 s; killed anyway';
  },
};

/** An image was just renamed into place; the job is not SUCCESS in the store yet (or its next sample is being written). */
const afterImageStored: KillPlan = {
  name: 'just after an image was stored',
  async moment({ imagesDir, rnd }) {
    const armed = await armAfterRandomDelay(rnd);
    const name = await nextFileEvent(imagesDir, (n) => /^[\w-]{43}\.png$/.test(n), 12_000);
    return name ? `${armed}, image ${name.slice(0, 10)}….png just renamed into place` : 'no image stored in 12 s; killed anyway';
  },
};

function upstreamCall(proxy: LatencyProxy, kind: 'submit' | 'status' | 'file', phase: 'request' | 'replied', label: string): KillPlan {
  return {
    name: label,
    async moment({ rnd }) {
      const armed = await armAfterRandomDelay(rnd);
      const seen = await proxy.next(kind, phase, 10_000);
      const ms = phase === 'request' ? rnd.int(0, 10) : rnd.int(0, 3);
      await sleep(ms);
      return seen
        ? `${armed}, ${kind} call ${phase === 'request' ? 'in flight' : 'answered'}, killed ${ms} ms later`
        : `no ${kind} call in 10 s; killed anyway`;
    },
  };
}

// ---------------------------------------------------------------------------------------------
// Requests

interface ImagePool {
  /** Pairs of same-sized init and mask images, as base64 PNG data: URLs. */
  pairs: { init: string; mask: string }[];
}

async function makeImagePool(): Promise<ImagePool> {
  const dataUrl = (png: Buffer) => `data:image/png;base64,${png.toString('base64')}`;
  const pairs: ImagePool['pairs'] = [];
  for (const [size, r, g, b] of [
    [64, 200, 40, 40],
    [128, 40, 160, 220],
    [96, 30, 200, 90],
  ] as const) {
    const raw = Buffer.alloc(size * size * 3);
    for (let y = 0; y < size; y++) {
      for (let x = 0; x < size; x++) raw.set([(r + x) % 256, (g + y) % 256, (b + x + y) % 256], (y * size + x) * 3);
    }
    const init = await sharp(raw, { raw: { width: size, height: size, channels: 3 } })
      .png()
      .toBuffer();
    const maskRaw = Buffer.alloc(size * size);
    for (let y = 0; y < size; y++) for (let x = 0; x < size; x++) maskRaw[y * size + x] = x >= size / 2 ? 255 : 0;
    const mask = await sharp(maskRaw, { raw: { width: size, height: size, channels: 1 } })
      .png()
      .toBuffer();
    pairs.push({ init: dataUrl(init), mask: dataUrl(mask) });
  }
  return { pairs };
}

function makeRequest(
  rnd: Random,
  n: number,
  pool: ImagePool,
  models: { text?: (string | undefined)[]; inpainting?: (string | undefined)[] },
): JobRequest {
  const mode = rnd.pick<Mode>(['text2image', 'text2image', 'image2image', 'inpainting']);
  const size = () => rnd.pick([64, 128, 192, 256]);
  const input: JobRequest['input'] = {
    prompt: `crash recovery ${n}: a lighthouse on a cliff`,
    width: size(),
    height: size(),
    numInferenceSteps: rnd.int(2, 20),
    samples: rnd.int(1, 2),
    guidanceScale: rnd.pick([1.5, 7.5]),
    safetyChecker: false,
  };
  if (rnd.chance(0.7)) input.seed = rnd.int(0, 2_147_483_647);
  const pair = rnd.pick(pool.pairs);
  if (mode === 'text2image') {
    const model = rnd.pick(models.text ?? [undefined]);
    if (model) input.modelId = model;
  } else {
    input.initImage = pair.init;
    input.strength = rnd.pick([0.3, 0.6, 0.9]);
  }
  if (mode === 'inpainting') {
    input.maskImage = pair.mask;
    const model = rnd.pick(models.inpainting ?? [undefined]);
    if (model) input.modelId = model;
  }
  const via = rnd.chance(0.5) ? 'graphql' : 'rest';
  // Half the requests come from a careful client: an idempotency key, retried through outages.
  const keyed = rnd.chance(0.5);
  return {
    mode,
    via,
    input,
    ...(keyed
      ? {
          idempotencyKey: `crash-${SEED}-${n}-${rnd.int(0, 1e9)}`,
          keyVia: via === 'graphql' ? rnd.pick(['header', 'input'] as const) : ('header' as const),
        }
      : {}),
  };
}

// ---------------------------------------------------------------------------------------------
// Checks

/** Polls the newest jobs while the server runs: every final state shown to a client is recorded, and a SUCCESS's images fetched at once. */
class Observer {
  readonly seen = new Map<string, { status: string; urls: string[]; incarnation: number }>();
  readonly problems: string[] = [];
  imagesFetched = 0;
  private stopped = false;
  private loop: Promise<void> | null = null;

  constructor(private readonly server: CrashableServer) {}

  start(): void {
    this.loop = (async () => {
      while (!this.stopped) {
        if (this.server.up) await this.round().catch(() => {});
        await sleep(300);
      }
    })();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    await this.loop;
  }

  private async round(): Promise<void> {
    const incarnation = this.server.incarnation;
    const res = await gqlTimed(this.server.url, JobsDocument, { first: 50 }, this.server.key, { timeoutMs: 5_000 });
    for (const { node: job } of res.body.data?.jobs.edges ?? []) {
      if (!TERMINAL.has(job.status) || this.seen.has(job.id)) continue;
      this.seen.set(job.id, { status: job.status, urls: [...job.downloadUrls], incarnation });
      if (job.status !== 'SUCCESS') continue;
      for (const url of job.downloadUrls) {
        const r = await fetch(url, { signal: AbortSignal.timeout(5_000) }).catch(() => null);
        if (!r) continue; // the server was killed meanwhile
        const bytes = Buffer.from(await r.arrayBuffer().catch(() => new ArrayBuffer(0)));
        if (r.status === 404) this.problems.push(`job ${job.id} was shown SUCCESS while its image ${url} answered 404`);
        else if (r.status === 200 && !bytes.subarray(0, 8).equals(PNG_SIGNATURE)) {
          this.problems.push(`job ${job.id} was shown SUCCESS while its image ${url} was not a whole PNG (${bytes.length} bytes)`);
        } else this.imagesFetched++;
      }
    }
  }
}

async function checkImage(url: string, size: { width: number; height: number }): Promise<string | null> {
  const res = await fetch(url, { signal: AbortSignal.timeout(10_000) });
  const bytes = Buffer.from(await res.arrayBuffer());
  if (res.status !== 200) return `answered HTTP ${res.status}`;
  if (res.headers.get('content-type') !== 'image/png') return `content-type ${res.headers.get('content-type')}`;
  if (!bytes.subarray(0, 8).equals(PNG_SIGNATURE)) return `is not a PNG (${bytes.length} bytes)`;
  try {
    const { info } = await sharp(bytes).raw().toBuffer({ resolveWithObject: true });
    if (info.width !== size.width || info.height !== size.height)
      return `is ${info.width}x${info.height}, expected ${size.width}x${size.height}`;
  } catch (err) {
    return `does not decode (${(err as Error).message}; ${bytes.length} bytes)`;
  }
  return null;
}

async function listAllJobs(server: CrashableServer): Promise<JobFieldsFragment[]> {
  const all: JobFieldsFragment[] = [];
  let after: string | null = null;
  do {
    const res: Awaited<ReturnType<typeof gqlTimed<JobsQuery, JobsQueryVariables>>> = await gqlTimed(
      server.url,
      JobsDocument,
      { first: 100, after },
      server.key,
    );
    const page = res.body.data?.jobs;
    if (!page) throw new Error(`jobs query failed: ${JSON.stringify(res.body.errors)}`);
    all.push(...page.edges.map((e) => e.node));
    after = page.pageInfo.hasNextPage ? page.pageInfo.endCursor : null;
  } while (after);
  return all;
}

async function mapLimit<T, R>(items: readonly T[], limit: number, fn: (item: T) => Promise<R>): Promise<R[]> {
  const out: R[] = new Array<R>(items.length);
  let next = 0;
  await Promise.all(
    Array.from({ length: Math.min(limit, items.length) }, async () => {
      while (next < items.length) {
        const i = next++;
        out[i] = await fn(items[i]!);
      }
    }),
  );
  return out;
}

const describeAccepted = (a: AcceptedJob) =>
  `${a.mode} via ${a.via}${a.idempotencyKey ? ' (idempotency key)' : ''}, samples ${a.samples}, ${a.width}x${a.height}, answered by incarnation ${a.incarnation} after ${a.attempts} attempt(s)`;

// ---------------------------------------------------------------------------------------------
// The scenario runner

async function runScenario(s: Scenario): Promise<void> {
  const rnd = seededRandom(SEED + s.name.length * 7919);
  const dataDir = mkdtempSync(path.join(tmpdir(), `sd-api-crash-${s.name}-`));
  const port = await freePort();
  const server = new CrashableServer({ ...BASE_ENV, ...s.env, PORT: String(port), DATA_DIR: dataDir }, s.startTimeoutMs);
  const began = Date.now();
  const tag = `[crash-recovery:${s.name}]`;
  let failed = true;
  try {
    const firstStartMs = await server.start();
    const imagesDir = path.join(dataDir, 'images');
    let n = 0;
    const submitter = new Submitter(server, () => s.request(rnd, n++));
    const observer = new Observer(server);
    observer.start();
    submitter.start(s.clients, () => rnd.int(s.pauseMs[0], s.pauseMs[1]));

    const killLog: string[] = [];
    const restartMs: number[] = [];
    const killTimes: number[] = [];
    for (const [i, plan] of s.kills.entries()) {
      const moment = await plan.moment({ server, submitter, rnd, imagesDir });
      const listened = server.listeningFor();
      const incarnation = server.incarnation;
      killTimes.push(Date.now());
      const how = await server.kill(plan.termFirstMs ? { termFirstMs: rnd.int(plan.termFirstMs[0], plan.termFirstMs[1]) } : {});
      killLog.push(
        `  kill #${i + 1} of incarnation ${incarnation}, ${listened} ms after it listened, ${submitter.accepted.length} jobs accepted so far — ${plan.name}: ${moment} (${how})`,
      );
      await sleep(rnd.int(0, 400)); // down for a while: clients meet a refused connection
      restartMs.push(await server.start());
    }
    // After the last restart: no new jobs; the retrying client finishes what it had in hand.
    await submitter.stop();
    const submitEnded = Date.now();

    // Wait (bounded) for every job in the store, answered or not, to end.
    let all: JobFieldsFragment[] = [];
    const deadline = Date.now() + s.drainTimeoutMs;
    for (;;) {
      all = await listAllJobs(server);
      if (all.every((j) => TERMINAL.has(j.status)) || Date.now() > deadline) break;
      await sleep(500);
    }
    const drainedMs = Date.now() - submitEnded;
    await observer.stop();

    const problems: string[] = [...server.unexpectedExits, ...observer.problems];
    const accepted = [...new Map(submitter.accepted.map((a) => [a.id, a])).values()];
    const acceptedIds = new Set(accepted.map((a) => a.id));
    const inStore = new Map(all.map((j) => [j.id, j]));

    // Every accepted job: the job query finds it, it is final, and its final state is whole.
    const finals = await mapLimit(accepted, 8, async (a) => {
      const res = await gqlTimed(server.url, JobDocument, { id: a.id }, server.key);
      return { a, job: res.body.data?.job ?? null, errors: res.body.errors };
    });
    const failureCodes = new Map<string, number>();
    let successes = 0;
    let canceled = 0;
    let imagesChecked = 0;
    for (const { a, job, errors } of finals) {
      if (!job) {
        problems.push(
          `accepted job ${a.id} (${describeAccepted(a)}) is not found by the job query${errors ? `: ${JSON.stringify(errors)}` : ''}`,
        );
        continue;
      }
      if (
        job.mode.toLowerCase() !== a.mode.toLowerCase() ||
        job.parameters.samples !== a.samples ||
        job.parameters.width !== a.width ||
        job.parameters.height !== a.height
      ) {
        problems.push(
          `job ${a.id} is not the request that was accepted (${describeAccepted(a)}): ${job.mode} ${job.parameters.width}x${job.parameters.height} samples ${job.parameters.samples}`,
        );
      }
      if (!TERMINAL.has(job.status)) {
        problems.push(
          `accepted job ${a.id} (${describeAccepted(a)}) is still ${job.status} ${Math.round(drainedMs / 1000)} s after the last restart ` +
            `(progress ${job.progress.step}/${job.progress.totalSteps}, created ${job.createdAt}, started ${job.startedAt})`,
        );
        continue;
      }
      if (job.status === 'CANCELED') canceled++;
      if (job.status === 'FAILURE') {
        const code = job.error?.code ?? '';
        failureCodes.set(code || '(none)', (failureCodes.get(code || '(none)') ?? 0) + 1);
        if (!code || !job.error?.message)
          problems.push(`job ${a.id} ended FAILURE without a code and a message: ${JSON.stringify(job.error)}`);
      }
      if (job.status === 'SUCCESS') {
        successes++;
        if (job.images.length < 1) problems.push(`job ${a.id} is SUCCESS without any image`);
        if (job.images.length !== a.samples || job.downloadUrls.length !== a.samples) {
          problems.push(
            `job ${a.id} is SUCCESS with ${job.images.length} images (${job.downloadUrls.length} downloadUrls) for samples=${a.samples}`,
          );
        }
        const size = s.imageSize(job);
        for (const image of job.images) {
          const bad = await checkImage(image.url, size).catch((err: unknown) => `could not be fetched (${(err as Error).message})`);
          imagesChecked++;
          if (bad) problems.push(`job ${a.id} is SUCCESS but its image ${image.url} ${bad}`);
        }
      }
      // REST clients poll the contract's status route: the same answer there.
      if (a.via === 'rest') {
        const res = await fetch(`${server.url}/sd/${a.mode}/v1/status/${a.id}`, { headers: { 'api-key': server.key } });
        const body = (await res.json()) as { status?: string; download_urls?: string[]; error?: string };
        const expected = job.status === 'SUCCESS' ? 'SUCCESS' : 'FAILURE';
        if (res.status !== 200 || body.status !== expected)
          problems.push(`REST status of job ${a.id} answers ${res.status} ${JSON.stringify(body)} for a ${job.status} job`);
        else if (expected === 'SUCCESS' && JSON.stringify(body.download_urls) !== JSON.stringify(job.downloadUrls)) {
          problems.push(`REST status of job ${a.id} lists other download_urls than the job`);
        } else if (expected === 'FAILURE' && !body.error) problems.push(`REST status of FAILURE job ${a.id} has no error text`);
      }
      // A state once shown as final never changes (what was answered was on disk).
      const shown = observer.seen.get(a.id);
      if (shown && (shown.status !== job.status || JSON.stringify(shown.urls) !== JSON.stringify(job.downloadUrls))) {
        problems.push(
          `job ${a.id} was shown ${shown.status} ${JSON.stringify(shown.urls)} by incarnation ${shown.incarnation}, and is now ${job.status} ${JSON.stringify(job.downloadUrls)}`,
        );
      }
    }

    // Jobs in the store that no client heard of (created, then killed before the answer) must end too.
    const unacknowledged = all.filter((j) => !acceptedIds.has(j.id));
    for (const j of all) {
      if (!TERMINAL.has(j.status) && !acceptedIds.has(j.id)) {
        problems.push(
          `job ${j.id} (created but never answered, ${j.mode}) is still ${j.status} ${Math.round(drainedMs / 1000)} s after the last restart (created ${j.createdAt})`,
        );
      }
    }
    for (const a of accepted)
      if (!inStore.has(a.id)) problems.push(`accepted job ${a.id} (${describeAccepted(a)}) is missing from the jobs list`);

    // One idempotency key, one job.
    const byKey = new Map<string, Set<string>>();
    for (const a of submitter.accepted)
      if (a.idempotencyKey) byKey.set(a.idempotencyKey, (byKey.get(a.idempotencyKey) ?? new Set()).add(a.id));
    for (const [key, ids] of byKey)
      if (ids.size > 1) problems.push(`idempotency key ${key} answered with ${ids.size} different jobs: ${[...ids].join(', ')}`);
    // Retried creates answered with a job made before a kill: committed, unanswered, then found under the key.
    const replayedAcrossCrash = accepted.filter(
      (a) => a.attempts > 1 && killTimes.some((t) => Date.parse(inStore.get(a.id)?.createdAt ?? '') < t && t < a.at),
    ).length;

    const health = await fetch(`${server.url}/healthz`).then(
      (r) => r.status,
      (err: unknown) => `${(err as Error).message}`,
    );
    if (health !== 200) problems.push(`/healthz answered ${health} after everything`);

    // Graceful stop still works, and the database left behind is sound.
    const exit = await server.stopGracefully();
    if (exit !== 0) problems.push(`the last server did not stop gracefully on SIGTERM (exit ${exit})`);
    const db = new Database(path.join(dataDir, 'sd-api.sqlite'), { readonly: true, fileMustExist: true });
    let dbSummary = '';
    let orphans = { images: 0, temps: 0 };
    try {
      const integrity = db.pragma('integrity_check', { simple: true });
      if (integrity !== 'ok') problems.push(`PRAGMA integrity_check: ${String(integrity)}`);
      const rows = db.prepare('SELECT * FROM jobs').all() as Record<string, unknown>[];
      const referenced = new Set<string>();
      for (const row of rows) {
        const status = String(row.status);
        if (!TERMINAL.has(status)) problems.push(`database: job ${String(row.id)} is ${status}`);
        const images = JSON.parse(String(row.images ?? '[]')) as { name: string }[];
        for (const image of images) {
          referenced.add(image.name);
          const file = path.join(imagesDir, image.name);
          if (!existsSync(file) || statSync(file).size === 0)
            problems.push(`database: job ${String(row.id)} (${status}) names image ${image.name}, which is missing or empty on disk`);
        }
        if (status === 'SUCCESS' && images.length === 0) problems.push(`database: job ${String(row.id)} is SUCCESS with no images`);
        if (status === 'FAILURE' && !row.error_code) problems.push(`database: job ${String(row.id)} is FAILURE with no error code`);
        if (row.idempotency_key) {
          const mine = byKey.get(String(row.idempotency_key));
          if (mine && !mine.has(String(row.id)))
            problems.push(
              `database: idempotency key ${String(row.idempotency_key)} holds job ${String(row.id)}, but the client was answered ${[...mine].join(', ')}`,
            );
        }
      }
      if (rows.length !== all.length) problems.push(`database holds ${rows.length} jobs, the jobs query listed ${all.length}`);
      const files = readdirSync(imagesDir);
      orphans = {
        images: files.filter((f) => !f.endsWith('.tmp') && !referenced.has(f)).length,
        temps: files.filter((f) => f.endsWith('.tmp')).length,
      };
      dbSummary = `${rows.length} jobs in the database, integrity ${String(integrity)}`;
    } finally {
      db.close();
    }

    const codes = [...failureCodes.entries()].map(([c, k]) => `${c}: ${k}`).join(', ') || 'none';
    const viaRest = accepted.filter((a) => a.via === 'rest').length;
    const modes = (['text2image', 'image2image', 'inpainting'] as const)
      .map((m) => `${m} ${accepted.filter((a) => a.mode === m).length}`)
      .join(', ');
    const errorLogs = [...server.errorLogs().entries()].map(([m, k]) => `    ${k}× ${m}`);
    const refusals = [...submitter.refusals.entries()].slice(0, 8).map(([m, k]) => `    ${k}× ${m}`);
    console.log(
      [
        `${tag} seed ${SEED}: accepted ${accepted.length}, success ${successes}, failure ${[...failureCodes.values()].reduce((x, y) => x + y, 0)} (by code: ${codes}), canceled ${canceled}, kills ${s.kills.length}`,
        `  accepted by mode: ${modes}; via REST ${viaRest}, GraphQL ${accepted.length - viaRest}; with idempotency keys ${accepted.filter((a) => a.idempotencyKey).length} (${accepted.filter((a) => a.attempts > 1).length} answered on a retry, ${replayedAcrossCrash} of them with a job committed before a kill)`,
        `  requests ${submitter.stats.requests}: accepted ${submitter.stats.accepted} (${submitter.stats.replayedNonPending} of them a retry answered with an already finished job), refused ${submitter.stats.refused}, failed while down ${submitter.stats.down}, keyed requests abandoned ${submitter.stats.gaveUp}; created but never answered ${unacknowledged.length}`,
        `  images checked ${imagesChecked} at the end, ${observer.imagesFetched} while running; orphan image files ${orphans.images}, leftover .tmp files ${orphans.temps}; ${dbSummary}`,
        `  first start ${firstStartMs} ms, restarts ${restartMs.join('/')} ms, drained ${drainedMs} ms after the last restart, ${Math.round((Date.now() - began) / 1000)} s in all`,
        ...killLog,
        ...(refusals.length ? ['  refusals:', ...refusals] : []),
        ...(errorLogs.length ? ['  error logs of the servers:', ...errorLogs] : []),
        ...(problems.length ? [`  PROBLEMS (${problems.length}):`, ...problems.slice(0, 40).map((p) => `    ${p}`)] : []),
      ].join('\n'),
    );

    expect(accepted.length, 'the stream of jobs got some accepted').toBeGreaterThan(s.kills.length);
    expect(problems, problems.slice(0, 40).join('\n')).toEqual([]);
    failed = false;
  } finally {
    await server.killAll();
    if (failed) console.log(`${tag} server output (tails):\n${server.outputTail(2500)}\nDATA_DIR kept: ${dataDir}`);
    if (!KEEP_DATA && !failed) rmSync(dataDir, { recursive: true, force: true });
  }
}

// ---------------------------------------------------------------------------------------------

describe('crash recovery: SIGKILL at random moments of a stream of jobs, restart on the same PORT and DATA_DIR', () => {
  it('local engine (tiny models): no accepted job is lost, stuck, or SUCCESS without its images', async () => {
    const pool = await makeImagePool();
    const rnd = seededRandom(SEED);
    await runScenario({
      name: 'local',
      env: { ENGINE: 'local', LOCAL_CONCURRENCY: '1' },
      startTimeoutMs: 120_000,
      request: (r, n) => makeRequest(r, n, pool, { text: [undefined, 'tiny', 'sd1.5'], inpainting: [undefined, 'tiny-inpainting'] }),
      clients: 3,
      pauseMs: [150, 600],
      kills: rnd.shuffle([
        afterDelay,
        afterBurst,
        whileProcessing,
        whileWritingImage,
        afterImageStored,
        rnd.pick([afterDelay, duringGracefulStop]),
      ]),
      drainTimeoutMs: 90_000,
      imageSize: (job) => ({ width: job.parameters.width, height: job.parameters.height }),
    });
  }, 240_000);

  it('imagepipeline engine (fake upstream, kept across restarts): kills in submit, polling, download and storing lose nothing', async () => {
    const pool = await makeImagePool();
    const rnd = seededRandom(SEED + 1);
    const upstream = new FakeImagePipeline();
    await upstream.start();
    upstream.behaviour.stepsPerPoll = 6;
    const delays = seededRandom(SEED + 2);
    const proxy = new LatencyProxy(
      () => upstream.url,
      (kind) =>
        kind === 'submit' ? delays.int(30, 200) : kind === 'file' ? delays.int(20, 150) : kind === 'status' ? delays.int(5, 40) : 0,
    );
    await proxy.start();
    try {
      await runScenario({
        name: 'imagepipeline',
        env: {
          ENGINE: 'imagepipeline',
          IMAGEPIPELINE_URL: proxy.url,
          IMAGEPIPELINE_API_KEY: upstream.apiKey,
          IMAGEPIPELINE_RETRIES: '2',
          IMAGEPIPELINE_TIMEOUT_MS: '5000',
          IMAGEPIPELINE_PROBE_INTERVAL_MS: '500',
        },
        startTimeoutMs: 60_000,
        request: (r, n) => makeRequest(r, n, pool, {}),
        clients: 3,
        pauseMs: [30, 200],
        kills: [
          afterBurst,
          ...rnd.shuffle([
            upstreamCall(proxy, 'submit', 'request', 'while a submit to the upstream is in flight'),
            upstreamCall(proxy, 'status', 'request', 'while a status poll is in flight'),
            upstreamCall(proxy, 'file', 'request', 'while an image download is in flight'),
            upstreamCall(proxy, 'file', 'replied', 'just after an image download (storing)'),
            rnd.pick([whileWritingImage, afterImageStored, afterDelay, duringGracefulStop]),
          ]),
        ],
        drainTimeoutMs: 60_000,
        // The fake upstream's images are 16x16 whatever was asked.
        imageSize: () => ({ width: 16, height: 16 }),
      });
      // A kill between the upstream's answer to a submit and the handle's commit makes the job go up again after the restart.
      const perPrompt = new Map<string, number>();
      for (const j of upstream.jobs.values()) perPrompt.set(String(j.body.prompt), (perPrompt.get(String(j.body.prompt)) ?? 0) + 1);
      const resubmitted = [...perPrompt.values()].filter((k) => k > 1).length;
      const neverPolled = [...upstream.jobs.values()].filter((j) => j.statusCalls === 0).length;
      console.log(
        `[crash-recovery:imagepipeline] upstream calls through the proxy: ${JSON.stringify(proxy.counts)}; upstream jobs ${upstream.jobs.size} ` +
          `for ${perPrompt.size} of ours: ${resubmitted} submitted more than once after a kill, ${neverPolled} upstream jobs never polled (orphaned upstream work)`,
      );
    } finally {
      await proxy.stop();
      await upstream.stop();
    }
  }, 240_000);
});

describe('crash recovery: SIGKILL during the first start, while the tiny models are being generated', () => {
  const rnd = seededRandom(SEED + 3);
  // Files the generator writes once tiny/unet/model.onnx exists (the one file whose presence makes later starts skip generation).
  const target =
    process.env.CRASH_FIRST_START_TARGET ??
    rnd.pick([
      'tiny/unet/model.onnx',
      'tiny/vae_decoder/model.onnx',
      'tiny/safety_checker/model.onnx',
      'tiny/embeddings/tiny-single.safetensors',
    ]);
  let catalogue: { id: string; aliases: string[]; inpainting: boolean }[] = [];
  let restarted: { url: string; key: string } | null = null;
  let firstJob: JobFieldsFragment | null = null;
  let dataDir = '';
  const procs: ServerProcess[] = [];

  afterAll(async () => {
    for (const p of procs) if (p.child.exitCode === null && p.child.signalCode === null) p.child.kill('SIGKILL');
    await Promise.all(procs.map((p) => p.exited));
    if (dataDir && !KEEP_DATA) rmSync(dataDir, { recursive: true, force: true });
  });

  const runToEnd = async (url: string, key: string, id: string) => {
    let job: JobFieldsFragment | null | undefined;
    for (let i = 0; i < 300 && !(job && TERMINAL.has(job.status)); i++) {
      await sleep(100);
      job = (await gqlTimed(url, JobDocument, { id }, key)).body.data?.job;
    }
    return job ?? null;
  };

  it('the server killed mid-generation starts again (no crash loop), prints a key, and a job it accepts ends SUCCESS or FAILURE with a reason', async () => {
    dataDir = mkdtempSync(path.join(tmpdir(), 'sd-api-crash-firststart-'));
    const env = { ...BASE_ENV, ENGINE: 'local', LOCAL_CONCURRENCY: '1', PORT: String(await freePort()), DATA_DIR: dataDir };
    const first = startServerProcess(env, 120_000);
    procs.push(first);
    // The models are built in a scratch folder (models.partial-<pid>) and renamed into place.
    const candidates = () => [
      path.join(dataDir, 'models', target),
      ...readdirSync(dataDir)
        .filter((d) => d.startsWith('models.partial-'))
        .map((d) => path.join(dataDir, d, target)),
    ];
    const until = Date.now() + 60_000;
    let file: string | undefined;
    while (!(file = candidates().find((f) => existsSync(f))) && Date.now() < until && first.child.exitCode === null) {
      await new Promise((r) => setImmediate(r));
    }
    expect(file, `${target} was never written`).toBeDefined();
    first.child.kill('SIGKILL');
    await first.exited;
    const written = readdirSync(file!.slice(0, file!.length - target.length), { recursive: true }).length;

    const second = startServerProcess(env, 120_000);
    procs.push(second);
    const url = await second.url;
    // The first start died before it made a key, so this one makes and prints it.
    const key = second.printedKey();
    expect(key).toMatch(/^sdk_/);
    restarted = { url, key: key! };
    expect((await fetch(`${url}/healthz`)).status).toBe(200);
    const models = await gqlTimed(url, ModelsDocument, {}, key!);
    expect(models.body.errors).toBeUndefined();
    catalogue = (models.body.data?.models ?? []).map((m) => ({ id: m.id, aliases: m.aliases, inpainting: m.inpainting ?? false }));
    const res = await gqlTimed(
      url,
      Text2ImageDocument,
      { input: { prompt: 'after a crash', width: 64, height: 64, numInferenceSteps: 2, safetyChecker: false } },
      key!,
    );
    const id = res.body.data?.text2image.id;
    expect(id, JSON.stringify(res.body.errors)).toBeDefined();
    firstJob = await runToEnd(url, key!, id!);
    console.log(
      `[crash-recovery:first-start] killed when ${target} appeared (${written} paths under models/); after the restart the catalogue is: ` +
        `${catalogue.map((m) => `${m.id}${m.aliases.length ? ` (${m.aliases.join(', ')})` : ''}`).join('; ')}; a text2image job on sd1.5 ended ` +
        `${firstJob?.status} ${firstJob?.error ? JSON.stringify(firstJob.error) : ''}`,
    );
    expect(firstJob && TERMINAL.has(firstJob.status), `job still ${firstJob?.status}`).toBe(true);
    if (firstJob!.status === 'FAILURE') expect(firstJob!.error?.code && firstJob!.error.message).toBeTruthy();
  }, 180_000);

  // Found by this file: a SIGKILL mid-generation used to leave a half-built models/ that later
  // starts skipped. The models are now built in a scratch folder and renamed into place, the
  // manifest (written last) marking a finished build.
  it('after the restart it serves what an uninterrupted first start serves: the whole catalogue, and text2image and inpainting jobs succeed', async () => {
    expect(restarted, 'the previous test restarted the server').not.toBeNull();
    const byId = new Map(catalogue.map((m) => [m.id, m]));
    expect(byId.get('tiny')?.aliases ?? []).toEqual(expect.arrayContaining(['sd1.5', '38ff8ad2-d62a-457c-8b2c-182e48e564f2']));
    expect(byId.get('tiny-a1111')?.aliases ?? []).toContain('f84133b4-aad8-44be-b9ce-7e7e3a8c111f');
    expect(byId.get('tiny-inpainting')?.inpainting).toBe(true);
    expect(firstJob?.status, JSON.stringify(firstJob?.error)).toBe('SUCCESS');
    const pool = await makeImagePool();
    const { url, key } = restarted!;
    const res = await gqlTimed(
      url,
      InpaintingDocument,
      {
        input: {
          prompt: 'a door',
          modelId: 'tiny-inpainting',
          initImage: pool.pairs[0]!.init,
          maskImage: pool.pairs[0]!.mask,
          width: 64,
          height: 64,
          numInferenceSteps: 2,
          safetyChecker: false,
        },
      },
      key,
    );
    const id = res.body.data?.inpainting.id;
    expect(id, JSON.stringify(res.body.errors)).toBeDefined();
    const job = await runToEnd(url, key, id!);
    expect(job?.status, JSON.stringify(job?.error)).toBe('SUCCESS');
  }, 60_000);
});
