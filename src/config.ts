import path from 'node:path';
import { z } from 'zod';
import { parseAllowHosts } from './net/address-policy.js';
import { NOISE_SOURCES, SCHEDULER_NAMES, type NoiseSourceName } from './generation/request.js';
import type { AdmissionLimits } from './limits/job-admission.js';
import type { ImageUrlMode } from './images/image-links.js';
import { parseImageStoreUrl, type ImageStoreConfig, type ImageStoreUrl } from './images/image-store-url.js';
import { MAX_PRESIGN_SECONDS } from './images/s3-image-store.js';

/**
 * The server's whole configuration: read once from the environment at start,
 * validated here, and passed down. Nothing else reads process.env.
 */

const port = z.coerce.number().int().min(0).max(65535);
const positiveMs = z.coerce.number().int().min(1);
const bool = z.enum(['true', 'false', '1', '0', 'yes', 'no']).transform((v) => v === 'true' || v === '1' || v === 'yes');
/** What to do instead of listing several upstreams, for the refusal of a list. */
const SEVERAL_MACHINES =
  'the imagepipeline engine sends jobs to one upstream (the hosted service, or one other server). Several machines are served ' +
  'by the queue: set REDIS_URL and run `npm run worker` on each (each worker may use ENGINE=imagepipeline against its own ' +
  'upstream); see "Running at scale" in the README';

/** The imagepipeline engine's one upstream: an http(s) base URL, without trailing slashes. */
const upstreamUrl = z.string().transform((value, ctx) => {
  const url = value.trim();
  if (url.includes(',')) {
    ctx.addIssue({ code: 'custom', message: `must be one URL, not a comma-separated list: ${SEVERAL_MACHINES}` });
    return z.NEVER;
  }
  if (!z.url({ protocol: /^https?$/ }).safeParse(url).success) {
    ctx.addIssue({ code: 'custom', message: `"${url}" is not an http(s) URL` });
    return z.NEVER;
  }
  return url.replace(/\/+$/, '');
});

/** The one upstream's key. */
const upstreamKey = z.string().transform((value, ctx) => {
  const key = value.trim();
  if (key.includes(',')) {
    ctx.addIssue({ code: 'custom', message: `must be one key (the upstream's), not a comma-separated list: ${SEVERAL_MACHINES}` });
    return z.NEVER;
  }
  return key || undefined;
});
/** Hostnames, IPs or CIDR ranges that outbound calls may reach although private. */
const allowHosts = z
  .string()
  .transform((v, ctx) => {
    const hosts = v
      .split(',')
      .map((h) => h.trim())
      .filter(Boolean);
    try {
      parseAllowHosts(hosts);
    } catch (err) {
      ctx.addIssue({ code: 'custom', message: (err as Error).message });
    }
    return hosts;
  })
  .default([]);
const DURATION_UNITS_MS: Record<string, number> = { ms: 1, s: 1_000, m: 60_000, h: 3_600_000, d: 86_400_000, w: 604_800_000 };

/**
 * A duration as operators write it: a whole number with a unit (500ms, 90s, 15m, 12h, 30d, 2w),
 * or a bare number of seconds. Returns milliseconds; null when the text is not one. The one
 * parser of JOB_RETENTION, RETENTION_SWEEP_INTERVAL and IMAGE_URL_TTL.
 */
export function parseDuration(text: string): number | null {
  const match = /^(\d{1,12})\s*(ms|s|m|h|d|w)?$/.exec(text.trim().toLowerCase());
  if (!match) return null;
  const ms = Number(match[1]) * DURATION_UNITS_MS[match[2] ?? 's']!;
  return Number.isSafeInteger(ms) ? ms : null;
}

const DURATION_EXPECTED = 'must be a duration such as 3600, 90s, 15m, 12h, 30d or 2w (a bare number is seconds)';

/** A duration in milliseconds. */
const duration = z.string().transform((value, ctx) => {
  const ms = parseDuration(value);
  if (ms === null) {
    ctx.addIssue({ code: 'custom', message: DURATION_EXPECTED });
    return z.NEVER;
  }
  return ms;
});

/** A duration in whole seconds, between min and max seconds (a presigned URL's lifetime). */
const durationSeconds = (min: number, max: number, range: string) =>
  z.string().transform((value, ctx) => {
    const ms = parseDuration(value);
    if (ms === null) {
      ctx.addIssue({ code: 'custom', message: DURATION_EXPECTED });
      return z.NEVER;
    }
    if (ms % 1000 !== 0) {
      ctx.addIssue({ code: 'custom', message: 'must be a whole number of seconds' });
      return z.NEVER;
    }
    const seconds = ms / 1000;
    if (seconds < min || seconds > max) {
      ctx.addIssue({ code: 'custom', message: range });
      return z.NEVER;
    }
    return seconds;
  });

const imageStoreUrl = z.string().transform((value, ctx): ImageStoreUrl => {
  try {
    return parseImageStoreUrl(value);
  } catch (err) {
    ctx.addIssue({ code: 'custom', message: (err as Error).message });
    return z.NEVER;
  }
});

const optionalUrl = z.url({ protocol: /^https?$/, error: 'must be an http(s) URL' }).optional();
const redisUrl = z.url({ protocol: /^rediss?$/, error: 'must be a redis:// or rediss:// URL' }).optional();

const envSchema = z
  .object({
    PORT: port.default(4000),
    HOST: z.string().min(1).default('0.0.0.0'),
    DATA_DIR: z.string().min(1).default('./data'),
    /** Postgres as the store of jobs, keys and webhook deliveries; unset: SQLite in DATA_DIR. */
    DATABASE_URL: z
      .string()
      .refine((v) => /^postgres(ql)?:\/\/[^\s]+$/.test(v) && URL.canParse(v), { message: 'must be a postgres:// or postgresql:// URL' })
      .optional(),
    /** Connections each process may open to DATABASE_URL. */
    DATABASE_POOL_SIZE: z.coerce.number().int().min(1).max(1000).default(10),
    PUBLIC_URL: optionalUrl,
    LOG_LEVEL: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info'),
    LOG_FORMAT: z.enum(['auto', 'json', 'pretty']).default('auto'),
    /** How long finished jobs (with their images and webhook deliveries) are kept; 0: forever. */
    JOB_RETENTION: duration.default(30 * 86_400_000),
    RETENTION_SWEEP_INTERVAL: duration
      .pipe(
        z
          .number()
          .min(1_000, 'must be at least 1s')
          .max(2 ** 31 - 1, 'must be at most 24d'),
      )
      .default(3_600_000),
    ENGINE: z.enum(['local', 'imagepipeline']).default('local'),
    MODELS_DIR: z.string().min(1).optional(),
    LOCAL_CONCURRENCY: z.coerce.number().int().min(1).max(16).default(1),
    LOCAL_MAX_LOADED_CHECKPOINTS: z.coerce.number().int().min(1).max(16).default(1),
    LOCAL_SCHEDULER: z.enum(SCHEDULER_NAMES, { error: `must be one of ${SCHEDULER_NAMES.join(', ')}` }).default('DPMPP_2M_KARRAS'),
    LOCAL_NOISE: z.enum(NOISE_SOURCES, { error: `must be one of ${NOISE_SOURCES.join(', ')}` }).default('torch'),
    ORT_EXECUTION_PROVIDER: z.enum(['auto', 'cpu', 'cuda']).default('auto'),
    ORT_INTRA_OP_THREADS: z.coerce.number().int().min(0).max(256).default(0),
    SQLITE_SYNCHRONOUS: z.enum(['FULL', 'NORMAL']).default('FULL'),
    IMAGE_FETCH_ALLOW_HOSTS: allowHosts,
    IMAGE_FETCH_TIMEOUT_MS: positiveMs.default(15_000),
    WEBHOOK_ALLOW_HOSTS: allowHosts,
    WEBHOOK_TIMEOUT_MS: positiveMs.default(10_000),
    WEBHOOK_MAX_ATTEMPTS: z.coerce.number().int().min(1).max(30).default(8),
    WEBHOOK_RETRY_BASE_MS: positiveMs.default(2_000),
    IMAGE_FETCH_MAX_BYTES: z.coerce
      .number()
      .int()
      .min(1024)
      .default(20 * 1024 * 1024),
    IMAGE_FETCH_MAX_PIXELS: z.coerce
      .number()
      .int()
      .min(64 * 64)
      .default(4096 * 4096),

    IMAGEPIPELINE_URL: upstreamUrl.default('https://api.imagepipeline.io'),
    IMAGEPIPELINE_API_KEY: upstreamKey.optional(),
    IMAGEPIPELINE_CATALOGUE: z.string().min(1).optional(),
    IMAGEPIPELINE_TIMEOUT_MS: positiveMs.default(30_000),
    IMAGEPIPELINE_RETRIES: z.coerce.number().int().min(0).max(10).default(3),
    IMAGEPIPELINE_MAX_IMAGE_BYTES: z.coerce
      .number()
      .int()
      .min(1024)
      .default(32 * 1024 * 1024),
    IMAGEPIPELINE_PROBE_INTERVAL_MS: positiveMs.default(5_000),

    POLL_MIN_INTERVAL_MS: positiveMs.default(250),
    POLL_MAX_INTERVAL_MS: positiveMs.default(5_000),
    POLL_CONCURRENCY: z.coerce.number().int().min(1).max(256).default(16),
    POLL_FAILURE_BUDGET_MS: positiveMs.default(120_000),
    DISPATCH_CONCURRENCY: z.coerce.number().int().min(1).max(256).default(8),

    RATE_LIMIT_JOBS_PER_MINUTE: z.coerce.number().int().min(0).default(120),
    RATE_LIMIT_JOBS_BURST: z.coerce.number().int().min(1).default(30),
    MAX_ACTIVE_JOBS_PER_KEY: z.coerce.number().int().min(0).default(100),

    MAX_REQUEST_BODY_BYTES: z.coerce
      .number()
      .int()
      .min(1024)
      .default(48 * 1024 * 1024),
    GRAPHQL_MAX_DEPTH: z.coerce.number().int().min(2).default(12),
    GRAPHQL_MAX_ALIASES: z.coerce.number().int().min(0).default(15),
    GRAPHQL_MAX_TOKENS: z.coerce.number().int().min(50).default(2000),
    GRAPHQL_MAX_COST: z.coerce.number().int().min(10).default(5000),
    /** Introspection's own depth limit: the standard query GraphiQL and codegen send is 15 deep. */
    GRAPHQL_MAX_INTROSPECTION_DEPTH: z.coerce.number().int().min(15).default(20),
    WS_MAX_CONNECTIONS_PER_KEY: z.coerce.number().int().min(0).default(50),
    WS_MAX_SUBSCRIPTIONS_PER_KEY: z.coerce.number().int().min(0).default(500),
    WS_CONNECTION_INIT_TIMEOUT_MS: positiveMs.default(3_000),
    /** With REDIS_URL: how long a replica's connections count towards the caps after it stops renewing them (died). */
    WS_LEASE_MS: z.coerce.number().int().min(300).default(30_000),

    GRAPHIQL: bool.default(true),
    /** The web studio at / (studio/dist). */
    STUDIO: bool.default(true),
    SHUTDOWN_GRACE_MS: positiveMs.default(10_000),

    /** file:///path (default: DATA_DIR/images) or s3://bucket/prefix. */
    IMAGE_STORE_URL: imageStoreUrl.optional(),
    IMAGE_URLS: z.enum(['proxied', 'presigned']).default('proxied'),
    IMAGE_URL_TTL: durationSeconds(1, MAX_PRESIGN_SECONDS, 'must be between 1 second and 7 days (the most S3 signs for)').default(3600),
    // The AWS SDK's standard variables, read here so they are checked with the rest; what is
    // unset is left to the SDK's own chain (profiles, web identity, instance roles).
    AWS_REGION: z.string().min(1).optional(),
    AWS_ENDPOINT_URL_S3: optionalUrl,
    AWS_ENDPOINT_URL: optionalUrl,
    AWS_ACCESS_KEY_ID: z.string().min(1).optional(),
    AWS_SECRET_ACCESS_KEY: z.string().min(1).optional(),
    AWS_SESSION_TOKEN: z.string().min(1).optional(),
    /** Path-style addressing (http://host/bucket/key); default: on when an endpoint is set (S3-compatible servers). */
    S3_FORCE_PATH_STYLE: bool.optional(),
    /** Set: API processes hand jobs to workers (npm run worker) through BullMQ on this Redis. */
    REDIS_URL: redisUrl,
    /** Namespace of every key and channel this server uses on that Redis (BullMQ's prefix). */
    REDIS_PREFIX: z
      .string()
      .regex(/^[A-Za-z0-9_.-]{1,64}$/, 'must be 1 to 64 letters, digits, _ . -')
      .default('sd15'),
    WORKER_CONCURRENCY: z.coerce.number().int().min(1).max(64).default(1),
    /** A worker's own port for GET /metrics (and /healthz), on HOST; unset: none. API processes serve /metrics on PORT. */
    METRICS_PORT: port.optional(),
    /** How many times a job that fails with an unexpected error (not the job's own) is tried. */
    QUEUE_ATTEMPTS: z.coerce.number().int().min(1).max(20).default(3),
    /** A worker's lock on a job; a worker that stops renewing it (killed) loses the job after this. */
    WORKER_LOCK_MS: positiveMs.min(1_000).default(30_000),
    /** How often workers look for jobs whose worker died (BullMQ's stalled check). */
    WORKER_STALLED_INTERVAL_MS: positiveMs.min(500).default(30_000),
    /** Times a job may lose its worker and be taken over before it fails. */
    WORKER_MAX_STALLED_COUNT: z.coerce.number().int().min(0).max(20).default(2),
    /** How often API processes compare the store's unfinished jobs with the queue (and at start). */
    QUEUE_RECONCILE_INTERVAL_MS: positiveMs.min(100).default(30_000),
  })
  .refine((c) => c.POLL_MIN_INTERVAL_MS <= c.POLL_MAX_INTERVAL_MS, {
    path: ['POLL_MAX_INTERVAL_MS'],
    message: 'must be at least POLL_MIN_INTERVAL_MS',
  })
  .refine((c) => c.IMAGE_URLS !== 'presigned' || c.IMAGE_STORE_URL?.kind === 's3', {
    path: ['IMAGE_URLS'],
    message: 'presigned URLs need an s3:// IMAGE_STORE_URL; the file store is served only through this server (IMAGE_URLS=proxied)',
  })
  .refine((c) => c.IMAGE_STORE_URL?.kind !== 's3' || !c.AWS_ACCESS_KEY_ID === !c.AWS_SECRET_ACCESS_KEY, {
    // Not the secret's name: a problem's report shows the variable's value.
    path: ['AWS_ACCESS_KEY_ID'],
    message: "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY go together: set both, or neither to use the SDK's other credentials",
  });

type Env = z.output<typeof envSchema>;

/** Variables whose values a configuration error does not repeat. */
const SECRET_VARIABLES = new Set(['DATABASE_URL', 'IMAGEPIPELINE_API_KEY']);

/**
 * Variables this server read once and no longer does, with what took their place: a start with
 * one set still goes ahead (nothing depends on it now), and says so in a warning (Config.notices).
 */
const RETIRED_VARIABLES: Record<string, string> = {
  IMAGEPIPELINE_WORKER_GRACE_MS:
    'the imagepipeline engine has one upstream, and a job whose upstream stays unreachable fails after POLL_FAILURE_BUDGET_MS (ENGINE_UNREACHABLE)',
};

export interface Config {
  port: number;
  host: string;
  dataDir: string;
  /** Postgres (postgres://...) as the store of jobs, keys and webhook deliveries; undefined: SQLite in dataDir. */
  databaseUrl: string | undefined;
  /** Connections this process may hold to databaseUrl at once. */
  databasePoolSize: number;
  /** Base for absolute download URLs; when absent, taken from each request's Host header. */
  publicUrl: string | undefined;
  logLevel: Env['LOG_LEVEL'];
  logFormat: Env['LOG_FORMAT'];
  retention: {
    /** Finished jobs older than this (by their end) are deleted; 0 keeps every job. */
    maxAgeMs: number;
    /** How often the sweep runs (the first time shortly after start). */
    sweepIntervalMs: number;
  };
  sqliteSynchronous: Env['SQLITE_SYNCHRONOUS'];
  graphiql: boolean;
  studio: boolean;
  shutdownGraceMs: number;
  /** Where generated images are kept: a folder, or an S3 bucket shared by every replica and worker. */
  imageStore: ImageStoreConfig;
  /** Download URLs through this server, or presigned straight to the bucket. */
  imageUrls: ImageUrlMode;
  engine: EngineConfig;
  /** Warnings to log at start: retired variables that are still set. */
  notices: string[];
  poller: {
    minIntervalMs: number;
    maxIntervalMs: number;
    concurrency: number;
    failureBudgetMs: number;
  };
  submitter: { concurrency: number };
  /** Per-key limits on creating jobs (0 turns one off). */
  admission: AdmissionLimits;
  /** Largest HTTP request body (GraphQL, uploads and REST); data: URLs make image requests large. */
  maxRequestBodyBytes: number;
  graphqlLimits: GraphQLLimits;
  webhooks: { allowHosts: string[]; timeoutMs: number; maxAttempts: number; retryBaseMs: number };
  /** Private hosts image URLs may name (checked at request time too, whichever engine fetches). */
  imageFetchAllowHosts: string[];
  /** Set (REDIS_URL): jobs go to worker processes through BullMQ; null: they run in this process. */
  queue: QueueConfig | null;
  /** What npm run worker does (with queue set). */
  worker: {
    concurrency: number;
    /** Where it serves its metrics (METRICS_PORT, on HOST); undefined: it serves none. */
    metricsPort: number | undefined;
  };
  websocket: {
    maxConnectionsPerKey: number;
    maxSubscriptionsPerKey: number;
    initTimeoutMs: number;
    revocationCheckMs: number;
    /** With REDIS_URL: the lease of each connection and operation in the counts shared by replicas (renewed every third of it). */
    leaseMs: number;
  };
}

export interface QueueConfig {
  redisUrl: string;
  /** BullMQ's key prefix, and the prefix of this server's pub/sub channels. */
  prefix: string;
  /** Tries of a job that fails with an unexpected error (a crash is counted by maxStalledCount). */
  attempts: number;
  lockMs: number;
  stalledIntervalMs: number;
  maxStalledCount: number;
  reconcileIntervalMs: number;
}

/** Limits on the shape of a GraphQL operation (depth, aliases, tokens, cost). */
export interface GraphQLLimits {
  maxDepth: number;
  maxAliases: number;
  maxTokens: number;
  maxCost: number;
  maxIntrospectionDepth: number;
}

export type EngineConfig = LocalEngineConfig | ImagePipelineEngineConfig;

export interface LocalEngineConfig {
  kind: 'local';
  /** Where checkpoints and embeddings live; absent: tiny test models built under dataDir. */
  modelsDir: string | undefined;
  dataDir: string;
  concurrency: number;
  maxLoadedCheckpoints: number;
  scheduler: (typeof SCHEDULER_NAMES)[number];
  /** Whose generator seeds drive: torch's CPU generator (default) or numpy's RandomState. */
  noise: NoiseSourceName;
  /** auto: CUDA when its libraries and a GPU are present, otherwise the CPU. */
  executionProvider: 'auto' | 'cpu' | 'cuda';
  /** 0: ONNX Runtime's default. */
  intraOpThreads: number;
  /** How init and mask image URLs are fetched (SSRF rules and limits). */
  imageFetch: { allowHosts: string[]; timeoutMs: number; maxBytes: number; maxPixels: number };
}

export type ImagePipelineEngineConfig = {
  kind: 'imagepipeline';
  /** The one upstream: the hosted service, or another instance of this server (several machines: the queue). */
  url: string;
  apiKey: string | undefined;
  /** A catalogue file; absent: asked of the upstream (an instance of this server answers), else the default. */
  cataloguePath: string | undefined;
  timeoutMs: number;
  retries: number;
  maxImageBytes: number;
  /** How often the upstream's /healthz is asked. */
  probeIntervalMs: number;
};

export class ConfigError extends Error {
  constructor(readonly problems: string[]) {
    super(`Invalid configuration:\n${problems.map((p) => `  - ${p}`).join('\n')}`);
    this.name = 'ConfigError';
  }
}

/** Reads and validates the configuration; throws ConfigError naming every bad variable. */
export function loadConfig(env: Record<string, string | undefined> = process.env): Config {
  // Empty strings mean "unset", as they do in most shells and .env files.
  const cleaned = Object.fromEntries(Object.entries(env).filter(([, v]) => v !== undefined && v !== ''));
  const parsed = envSchema.safeParse(cleaned);
  if (!parsed.success) {
    throw new ConfigError(
      parsed.error.issues.map((issue) => {
        const name = issue.path.join('.') || '(environment)';
        // Never echoed: a database URL may carry a password; another URL's user:password part is
        // masked (s3://key:secret@bucket is refused, not shown).
        const value =
          typeof issue.path[0] === 'string' && !SECRET_VARIABLES.has(issue.path[0])
            ? cleaned[issue.path[0]]?.replace(/^([a-z][a-z0-9+.-]*:\/\/)[^/?#]*@/i, '$1…@')
            : undefined;
        return `${name}: ${issue.message}${value !== undefined ? ` (got ${JSON.stringify(value)})` : ''}`;
      }),
    );
  }
  const e = parsed.data;
  return {
    port: e.PORT,
    host: e.HOST,
    dataDir: path.resolve(e.DATA_DIR),
    databaseUrl: e.DATABASE_URL,
    databasePoolSize: e.DATABASE_POOL_SIZE,
    publicUrl: e.PUBLIC_URL?.replace(/\/+$/, ''),
    logLevel: e.LOG_LEVEL,
    logFormat: e.LOG_FORMAT,
    retention: { maxAgeMs: e.JOB_RETENTION, sweepIntervalMs: e.RETENTION_SWEEP_INTERVAL },
    sqliteSynchronous: e.SQLITE_SYNCHRONOUS,
    graphiql: e.GRAPHIQL,
    studio: e.STUDIO,
    shutdownGraceMs: e.SHUTDOWN_GRACE_MS,
    imageStore: imageStoreConfig(e),
    imageUrls: e.IMAGE_URLS === 'presigned' ? { kind: 'presigned', ttlSeconds: e.IMAGE_URL_TTL } : { kind: 'proxied' },
    engine:
      e.ENGINE === 'local'
        ? {
            kind: 'local',
            modelsDir: e.MODELS_DIR ? path.resolve(e.MODELS_DIR) : undefined,
            dataDir: path.resolve(e.DATA_DIR),
            concurrency: e.LOCAL_CONCURRENCY,
            maxLoadedCheckpoints: e.LOCAL_MAX_LOADED_CHECKPOINTS,
            scheduler: e.LOCAL_SCHEDULER,
            noise: e.LOCAL_NOISE,
            executionProvider: e.ORT_EXECUTION_PROVIDER,
            intraOpThreads: e.ORT_INTRA_OP_THREADS,
            imageFetch: {
              allowHosts: e.IMAGE_FETCH_ALLOW_HOSTS,
              timeoutMs: e.IMAGE_FETCH_TIMEOUT_MS,
              maxBytes: e.IMAGE_FETCH_MAX_BYTES,
              maxPixels: e.IMAGE_FETCH_MAX_PIXELS,
            },
          }
        : {
            kind: 'imagepipeline',
            url: e.IMAGEPIPELINE_URL,
            apiKey: e.IMAGEPIPELINE_API_KEY,
            cataloguePath: e.IMAGEPIPELINE_CATALOGUE ? path.resolve(e.IMAGEPIPELINE_CATALOGUE) : undefined,
            timeoutMs: e.IMAGEPIPELINE_TIMEOUT_MS,
            retries: e.IMAGEPIPELINE_RETRIES,
            maxImageBytes: e.IMAGEPIPELINE_MAX_IMAGE_BYTES,
            probeIntervalMs: e.IMAGEPIPELINE_PROBE_INTERVAL_MS,
          },
    notices: Object.entries(RETIRED_VARIABLES)
      .filter(([name]) => cleaned[name] !== undefined)
      .map(([name, instead]) => `${name} is no longer read: ${instead}`),
    poller: {
      minIntervalMs: e.POLL_MIN_INTERVAL_MS,
      maxIntervalMs: e.POLL_MAX_INTERVAL_MS,
      concurrency: e.POLL_CONCURRENCY,
      failureBudgetMs: e.POLL_FAILURE_BUDGET_MS,
    },
    submitter: { concurrency: e.DISPATCH_CONCURRENCY },
    admission: {
      jobsPerMinute: e.RATE_LIMIT_JOBS_PER_MINUTE,
      burst: e.RATE_LIMIT_JOBS_BURST,
      maxActivePerKey: e.MAX_ACTIVE_JOBS_PER_KEY,
    },
    maxRequestBodyBytes: e.MAX_REQUEST_BODY_BYTES,
    imageFetchAllowHosts: e.IMAGE_FETCH_ALLOW_HOSTS,
    webhooks: {
      allowHosts: e.WEBHOOK_ALLOW_HOSTS,
      timeoutMs: e.WEBHOOK_TIMEOUT_MS,
      maxAttempts: e.WEBHOOK_MAX_ATTEMPTS,
      retryBaseMs: e.WEBHOOK_RETRY_BASE_MS,
    },
    graphqlLimits: {
      maxDepth: e.GRAPHQL_MAX_DEPTH,
      maxAliases: e.GRAPHQL_MAX_ALIASES,
      maxTokens: e.GRAPHQL_MAX_TOKENS,
      maxCost: e.GRAPHQL_MAX_COST,
      maxIntrospectionDepth: e.GRAPHQL_MAX_INTROSPECTION_DEPTH,
    },
    queue: e.REDIS_URL
      ? {
          redisUrl: e.REDIS_URL,
          prefix: e.REDIS_PREFIX,
          attempts: e.QUEUE_ATTEMPTS,
          lockMs: e.WORKER_LOCK_MS,
          stalledIntervalMs: e.WORKER_STALLED_INTERVAL_MS,
          maxStalledCount: e.WORKER_MAX_STALLED_COUNT,
          reconcileIntervalMs: e.QUEUE_RECONCILE_INTERVAL_MS,
        }
      : null,
    worker: { concurrency: e.WORKER_CONCURRENCY, metricsPort: e.METRICS_PORT },
    websocket: {
      maxConnectionsPerKey: e.WS_MAX_CONNECTIONS_PER_KEY,
      maxSubscriptionsPerKey: e.WS_MAX_SUBSCRIPTIONS_PER_KEY,
      initTimeoutMs: e.WS_CONNECTION_INIT_TIMEOUT_MS,
      revocationCheckMs: 1_000,
      leaseMs: e.WS_LEASE_MS,
    },
  };
}

function imageStoreConfig(e: Env): ImageStoreConfig {
  const url = e.IMAGE_STORE_URL ?? { kind: 'file', dir: path.join(path.resolve(e.DATA_DIR), 'images') };
  if (url.kind === 'file') return url;
  const endpoint = (e.AWS_ENDPOINT_URL_S3 ?? e.AWS_ENDPOINT_URL)?.replace(/\/+$/, '');
  return {
    ...url,
    region: e.AWS_REGION,
    endpoint,
    forcePathStyle: e.S3_FORCE_PATH_STYLE ?? endpoint !== undefined,
    credentials:
      e.AWS_ACCESS_KEY_ID && e.AWS_SECRET_ACCESS_KEY
        ? {
            accessKeyId: e.AWS_ACCESS_KEY_ID,
            secretAccessKey: e.AWS_SECRET_ACCESS_KEY,
            ...(e.AWS_SESSION_TOKEN ? { sessionToken: e.AWS_SESSION_TOKEN } : {}),
          }
        : undefined,
  };
}
