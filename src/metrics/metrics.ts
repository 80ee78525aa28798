import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry, type Metric } from 'prom-client';

/**
 * What this server measures, as Prometheus metrics (prom-client): pure definitions, no I/O.
 * Each app (and each worker process) makes its own registry with createMetrics(), never
 * prom-client's global default one, so that several apps in one process (the tests) keep apart.
 * Who records what is wired in app.ts; http/metrics.ts serves a registry.
 */

export { Registry };

/** Seconds. Queue waits run from milliseconds (an idle engine) to many minutes (a long queue). */
const WAIT_BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800];
/** Seconds for a whole generation: tiny models in tens of ms, SD 1.5 on a CPU in minutes. */
const GENERATION_BUCKETS = [0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 20, 30, 60, 120, 300, 600];
/** Seconds per denoising step: a GPU in tens of ms, a CPU in seconds. */
const STEP_BUCKETS = [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];
/** Seconds for one HTTP request or GraphQL operation. */
const REQUEST_BUCKETS = [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30];

/**
 * Values read when scraped from whatever knows them (the runner, the WebSocket server, the
 * engine). Registered only once a source is given (sample()), so a process without, say, a
 * WebSocket server does not report a misleading zero.
 */
export const SAMPLED = {
  queueDepth: {
    name: 'sd_queue_depth',
    help: 'Jobs accepted and not started yet, as the runner knows them (with workers: the shared queue, as BullMQ counts it).',
    type: 'gauge',
  },
  jobsTracked: {
    name: 'sd_jobs_tracked',
    help: 'Jobs the runner follows now: on their engine, or (an API process with workers) to their end.',
    type: 'gauge',
  },
  workerJobsRunning: {
    name: 'sd_worker_jobs_running',
    help: 'Jobs this worker process runs now (at most WORKER_CONCURRENCY).',
    type: 'gauge',
  },
  jobSubscriptions: { name: 'sd_job_subscriptions', help: 'Open jobStatus subscriptions (job event listeners).', type: 'gauge' },
  websocketConnections: { name: 'sd_websocket_connections', help: 'Open GraphQL WebSocket connections.', type: 'gauge' },
  previews: {
    name: 'sd_previews_total',
    help: 'Live previews made by this engine (only while a jobStatus subscriber selects progress.preview).',
    type: 'counter',
  },
} as const;

export type SampledMetric = keyof typeof SAMPLED;

export interface Metrics {
  readonly registry: Registry;
  /** Jobs accepted (persisted as PENDING), by mode. */
  readonly jobsCreated: Counter<'mode'>;
  /** Jobs that reached a terminal state through this process, by mode and status. */
  readonly jobsFinished: Counter<'mode' | 'status'>;
  /** Jobs that ended FAILURE, by error code (bounded: unknown codes become OTHER). */
  readonly engineErrors: Counter<'code'>;
  /** From create to start (PROCESSING, or SUCCESS without a PROCESSING report), by mode. */
  readonly queueWait: Histogram<'mode'>;
  /** From start to the end, for jobs that started, by mode and final status. */
  readonly generationTime: Histogram<'mode' | 'status'>;
  /** Time per denoising step, from the progress reports of running jobs, by mode. */
  readonly stepTime: Histogram<'mode'>;
  /** HTTP requests answered, by route template (never a raw path), method and status code. */
  readonly httpRequests: Counter<'route' | 'method' | 'status'>;
  readonly httpDuration: Histogram<'route' | 'method'>;
  /** GraphQL operations (HTTP and WebSocket), by type and outcome (ok, error, invalid). */
  readonly graphqlOperations: Counter<'type' | 'status'>;
  /** Queries and mutations, to their result (subscriptions last as long as their client wants). */
  readonly graphqlDuration: Histogram<'type'>;
  /** Open GraphQL subscriptions (HTTP event streams and WebSocket together). */
  readonly graphqlSubscriptions: Gauge;
  /** What the retention sweep removed. */
  readonly retentionJobsDeleted: Counter;
  readonly retentionImagesDeleted: Counter<'reason'>;
  readonly retentionLastSweep: Gauge;
  /** Registers a sampled metric with the function that knows its value. */
  sample(metric: SampledMetric, value: () => number | Promise<number>): void;
}

export function createMetrics(options: { processMetrics?: boolean } = {}): Metrics {
  const registry = new Registry();
  const registers = [registry];
  if (options.processMetrics ?? true) {
    // The typings say MetricObject; at run time these are the metric instances themselves.
    for (const metric of processMetrics().getMetricsAsArray()) registry.registerMetric(metric as unknown as Metric);
  }
  return {
    registry,
    jobsCreated: new Counter({ name: 'sd_jobs_created_total', help: 'Jobs accepted, by mode.', labelNames: ['mode'], registers }),
    jobsFinished: new Counter({
      name: 'sd_jobs_finished_total',
      help: 'Jobs that reached a terminal state in this process, by mode and status.',
      labelNames: ['mode', 'status'],
      registers,
    }),
    engineErrors: new Counter({
      name: 'sd_engine_errors_total',
      help: 'Jobs that ended FAILURE, by error code (the engine’s, or this server’s when the engine was unreachable or the results could not be stored).',
      labelNames: ['code'],
      registers,
    }),
    queueWait: new Histogram({
      name: 'sd_job_queue_wait_seconds',
      help: 'Time from a job’s creation to its start, by mode.',
      labelNames: ['mode'],
      buckets: WAIT_BUCKETS,
      registers,
    }),
    generationTime: new Histogram({
      name: 'sd_job_generation_seconds',
      help: 'Time from a job’s start to its end, by mode and final status.',
      labelNames: ['mode', 'status'],
      buckets: GENERATION_BUCKETS,
      registers,
    }),
    stepTime: new Histogram({
      name: 'sd_job_step_seconds',
      help: 'Time per denoising step of running jobs (from their progress reports), by mode.',
      labelNames: ['mode'],
      buckets: STEP_BUCKETS,
      registers,
    }),
    httpRequests: new Counter({
      name: 'sd_http_requests_total',
      help: 'HTTP requests answered, by route, method and status code.',
      labelNames: ['route', 'method', 'status'],
      registers,
    }),
    httpDuration: new Histogram({
      name: 'sd_http_request_duration_seconds',
      help: 'Time to answer an HTTP request, by route and method.',
      labelNames: ['route', 'method'],
      buckets: REQUEST_BUCKETS,
      registers,
    }),
    graphqlOperations: new Counter({
      name: 'sd_graphql_operations_total',
      help: 'GraphQL operations over HTTP and WebSocket, by type (query, mutation, subscription) and status (ok, error, invalid).',
      labelNames: ['type', 'status'],
      registers,
    }),
    graphqlDuration: new Histogram({
      name: 'sd_graphql_operation_duration_seconds',
      help: 'Time to execute a GraphQL query or mutation, by type.',
      labelNames: ['type'],
      buckets: REQUEST_BUCKETS,
      registers,
    }),
    graphqlSubscriptions: new Gauge({ name: 'sd_graphql_subscriptions', help: 'Open GraphQL subscriptions.', registers }),
    retentionJobsDeleted: new Counter({
      name: 'sd_retention_jobs_deleted_total',
      help: 'Finished jobs deleted by the retention sweep (with their images and webhook deliveries).',
      registers,
    }),
    retentionImagesDeleted: new Counter({
      name: 'sd_retention_images_deleted_total',
      help: 'Images deleted by the retention sweep: of expired jobs (expired), or written by jobs that never committed them (orphan).',
      labelNames: ['reason'],
      registers,
    }),
    retentionLastSweep: new Gauge({
      name: 'sd_retention_last_sweep_timestamp_seconds',
      help: 'When the retention sweep last completed (Unix time).',
      registers,
    }),
    sample(metric, value) {
      const { name, help, type } = SAMPLED[metric];
      if (type === 'gauge') {
        new Gauge({
          name,
          help,
          registers,
          async collect() {
            this.set(await value());
          },
        });
      } else {
        // A total kept elsewhere: the counter follows it (it only grows there).
        let seen = 0;
        new Counter({
          name,
          help,
          registers,
          async collect() {
            const now = await value();
            if (now > seen) this.inc(now - seen);
            seen = Math.max(seen, now);
          },
        });
      }
    },
  };
}

let processRegistry: Registry | null = null;

/**
 * The process's own metrics (CPU, memory, event loop lag, GC, handles): prom-client's default
 * metrics, collected once per process into a registry of their own, whose metric objects every
 * app's registry then also lists. Collecting them per app would start an event-loop monitor and
 * a GC observer per app, never stopped.
 */
function processMetrics(): Registry {
  if (!processRegistry) {
    processRegistry = new Registry();
    collectDefaultMetrics({ register: processRegistry });
  }
  return processRegistry;
}
