import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { print } from 'graphql';
import { Counter } from 'prom-client';
import { Image2ImageDocument, JobStatusDocument, Text2ImageDocument } from '../src/client/generated/graphql.js';
import { startMetricsServer } from '../src/http/metrics.js';
import { JobMetrics } from '../src/jobs/job-metrics.js';
import { createMetrics } from '../src/metrics/metrics.js';
import { fetchMetricsText, parseMetrics, sampleValue, type Sample } from './helpers/metrics.js';
import { testJob } from './helpers/jobs.js';
import { collect, startTestServer, waitFor, type TestServer } from './helpers/test-server.js';

const scrape = async (server: TestServer): Promise<Sample[]> => parseMetrics(await fetchMetricsText(server.url));

describe('GET /metrics (prom-client, one registry per app)', () => {
  let server: TestServer;
  const jobIds: string[] = [];
  const imageNames: string[] = [];

  beforeAll(async () => {
    server = await startTestServer();
  });
  afterAll(() => server.stop());

  it('counts jobs by mode and status, with queue wait, generation and step histograms', async () => {
    // A text2image job that succeeds, followed over the WebSocket.
    const ok = await server.gql(Text2ImageDocument, { input: { prompt: 'a lighthouse', numInferenceSteps: 20, samples: 2 } });
    expect(ok.errors).toBeUndefined();
    jobIds.push(ok.data!.text2image.id);
    const { values } = await collect(server.ws(), JobStatusDocument, { id: ok.data!.text2image.id });
    const done = values.at(-1)!.jobStatus;
    expect(done.status).toBe('SUCCESS');
    imageNames.push(...done.downloadUrls.map((u) => u.split('/').at(-1)!));

    // An image2image job the upstream fails.
    server.upstream.behaviour.failWith = 'out of memory';
    const bad = await server.gql(Image2ImageDocument, {
      input: { prompt: 'a barn', initImage: 'https://example.test/barn.png', strength: 0.5 },
    });
    expect(bad.errors).toBeUndefined();
    jobIds.push(bad.data!.image2image.id);
    const failed = (await collect(server.ws(), JobStatusDocument, { id: bad.data!.image2image.id })).values.at(-1)!.jobStatus;
    server.upstream.behaviour.failWith = null;
    expect(failed.status).toBe('FAILURE');
    const code = failed.error!.code;

    const m = await scrape(server);
    expect(sampleValue(m, 'sd_jobs_created_total', { mode: 'text2image' })).toBe(1);
    expect(sampleValue(m, 'sd_jobs_created_total', { mode: 'image2image' })).toBe(1);
    expect(sampleValue(m, 'sd_jobs_created_total', { mode: 'inpainting' })).toBe(0);
    expect(sampleValue(m, 'sd_jobs_finished_total', { mode: 'text2image', status: 'SUCCESS' })).toBe(1);
    expect(sampleValue(m, 'sd_jobs_finished_total', { mode: 'image2image', status: 'FAILURE' })).toBe(1);
    expect(sampleValue(m, 'sd_jobs_finished_total', { mode: 'text2image', status: 'FAILURE' })).toBe(0);
    expect(sampleValue(m, 'sd_engine_errors_total', { code })).toBe(1);
    expect(sampleValue(m, 'sd_engine_errors_total')).toBe(1);

    expect(sampleValue(m, 'sd_job_queue_wait_seconds_count', { mode: 'text2image' })).toBe(1);
    expect(sampleValue(m, 'sd_job_queue_wait_seconds_bucket', { mode: 'text2image', le: '+Inf' })).toBe(1);
    expect(sampleValue(m, 'sd_job_generation_seconds_count', { mode: 'text2image', status: 'SUCCESS' })).toBe(1);
    expect(sampleValue(m, 'sd_job_generation_seconds_sum', { mode: 'text2image', status: 'SUCCESS' })).toBeGreaterThan(0);
    // The fake upstream advances 5 steps a poll: the steps between two reports are each observed.
    const steps = sampleValue(m, 'sd_job_step_seconds_count', { mode: 'text2image' });
    expect(steps).toBeGreaterThanOrEqual(5);
    expect(steps).toBeLessThanOrEqual(20);

    expect(sampleValue(m, 'sd_queue_depth')).toBe(0);
    expect(sampleValue(m, 'sd_jobs_tracked')).toBe(0);
  });

  it('counts HTTP requests by route template and GraphQL operations by type and outcome', async () => {
    const before = await scrape(server);
    const posts = sampleValue(before, 'sd_http_requests_total', { route: '/graphql', method: 'POST', status: '200' });
    const mutations = sampleValue(before, 'sd_graphql_operations_total', { type: 'mutation', status: 'ok' });
    expect(posts).toBeGreaterThanOrEqual(2);
    expect(mutations).toBe(2);
    expect(sampleValue(before, 'sd_graphql_operations_total', { type: 'subscription', status: 'ok' })).toBe(2);
    expect(sampleValue(before, 'sd_graphql_operation_duration_seconds_count', { type: 'mutation' })).toBe(2);

    await fetch(`${server.url}/images/${imageNames[0]}`);
    await fetch(`${server.url}/images/not-an-image.png`);
    await fetch(`${server.url}/sd/text2image/v1/status/${jobIds[0]}`, { headers: { 'api-key': server.key } });
    await fetch(`${server.url}/no/such/${jobIds[1]}`);
    const query = (q: string, key: string | null = server.key) =>
      fetch(`${server.url}/graphql`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', ...(key ? { 'api-key': key } : {}) },
        body: JSON.stringify({ query: q }),
      });
    await query('{ viewer { name } }');
    await query('{ viewer { name } }', null); // refused: no key
    await query('{ noSuchField }'); // invalid

    const m = await scrape(server);
    expect(sampleValue(m, 'sd_http_requests_total', { route: '/images/{name}', method: 'GET', status: '200' })).toBe(1);
    expect(sampleValue(m, 'sd_http_requests_total', { route: '/images/{name}', method: 'GET', status: '404' })).toBe(1);
    expect(sampleValue(m, 'sd_http_requests_total', { route: '/sd/{mode}/v1/status/{id}', method: 'GET', status: '200' })).toBe(1);
    expect(sampleValue(m, 'sd_http_requests_total', { route: 'other' })).toBe(1);
    expect(sampleValue(m, 'sd_http_requests_total', { route: '/graphql', method: 'POST' })).toBeGreaterThanOrEqual(posts + 3);
    expect(sampleValue(m, 'sd_http_requests_total', { route: '/metrics', method: 'GET', status: '200' })).toBeGreaterThanOrEqual(1);
    expect(sampleValue(m, 'sd_http_request_duration_seconds_count', { route: '/images/{name}', method: 'GET' })).toBe(2);
    expect(sampleValue(m, 'sd_graphql_operations_total', { type: 'query', status: 'ok' })).toBe(1);
    expect(sampleValue(m, 'sd_graphql_operations_total', { type: 'query', status: 'error' })).toBe(1);
    expect(sampleValue(m, 'sd_graphql_operations_total', { type: 'query', status: 'invalid' })).toBe(1);
    expect(sampleValue(m, 'sd_graphql_operation_duration_seconds_count', { type: 'query' })).toBe(2);

    // No label carries a job id, an image name or a raw path.
    const labelValues = m.flatMap((s) => Object.values(s.labels));
    for (const secret of [...jobIds, ...imageNames, 'not-an-image.png', '/no/such']) {
      expect(labelValues.filter((v) => v.includes(secret))).toEqual([]);
    }
  });

  it('gauges open WebSockets and subscriptions while a client follows a job', async () => {
    const base = await scrape(server);
    expect(sampleValue(base, 'sd_graphql_subscriptions')).toBe(0);
    const sockets = sampleValue(base, 'sd_websocket_connections');

    server.upstream.behaviour.hold = true;
    const created = await server.gql(Text2ImageDocument, { input: { prompt: 'held' } });
    const id = created.data!.text2image.id;
    const client = server.ws();
    const values: unknown[] = [];
    const ended = new Promise<void>((resolve) =>
      client.subscribe(
        { query: print(JobStatusDocument), variables: { id } },
        { next: (v) => values.push(v), error: resolve, complete: resolve },
      ),
    );
    const during = await waitFor(async () => {
      const m = await scrape(server);
      return sampleValue(m, 'sd_graphql_subscriptions') === 1 ? m : null;
    });
    expect(sampleValue(during, 'sd_websocket_connections')).toBe(sockets + 1);
    expect(sampleValue(during, 'sd_job_subscriptions')).toBe(1);
    expect(sampleValue(during, 'sd_queue_depth')).toBe(1);

    server.upstream.behaviour.hold = false;
    server.upstream.release();
    await ended;
    await waitFor(async () => sampleValue(await scrape(server), 'sd_graphql_subscriptions') === 0);
    await client.dispose();
    await waitFor(async () => sampleValue(await scrape(server), 'sd_websocket_connections') === sockets);
    expect(values.length).toBeGreaterThan(0);
  });

  it('includes the process metrics, and each app has its own registry', async () => {
    const text = await fetchMetricsText(server.url);
    expect(text).toMatch(/^process_cpu_user_seconds_total \d/m);
    expect(text).toMatch(/^nodejs_heap_size_used_bytes \d/m);
    expect(text).toMatch(/^nodejs_eventloop_lag_seconds \d/m);
    expect(text).toContain('# TYPE sd_jobs_created_total counter');
    expect(text).toContain('# TYPE sd_job_queue_wait_seconds histogram');

    const other = await startTestServer();
    try {
      const m = parseMetrics(await fetchMetricsText(other.url));
      expect(sampleValue(m, 'sd_jobs_created_total')).toBe(0);
      expect(sampleValue(m, 'sd_graphql_operations_total')).toBe(0);
      expect(sampleValue(m, 'process_cpu_user_seconds_total')).toBeGreaterThan(0);
    } finally {
      await other.stop();
    }
    // The first server's counts are untouched by the second.
    expect(sampleValue(await scrape(server), 'sd_jobs_created_total')).toBe(3);
  });
});

describe('metrics outside the API server', () => {
  it('serves a registry on a port of its own (what a worker does with METRICS_PORT)', async () => {
    const metrics = createMetrics({ processMetrics: false });
    new Counter({ name: 'worker_things_total', help: 'Things.', registers: [metrics.registry] }).inc(3);
    const server = await startMetricsServer(metrics.registry, { port: 0, host: '127.0.0.1' });
    try {
      const res = await fetch(`${server.url}/metrics`);
      expect(res.status).toBe(200);
      expect(res.headers.get('content-type')).toContain('text/plain');
      const text = await res.text();
      expect(text).toContain('worker_things_total 3');
      expect(text).not.toContain('process_cpu');
      expect((await fetch(`${server.url}/healthz`)).status).toBe(200);
      expect((await fetch(`${server.url}/other`)).status).toBe(404);
    } finally {
      await server.close();
    }
  });

  it('JobMetrics: wait and run times from the job, time per step from the progress reports', async () => {
    const metrics = createMetrics({ processMetrics: false });
    let now = 10_000;
    const recorder = new JobMetrics(metrics, () => now);
    const pending = testJob({ createdAt: new Date(1_000) });
    recorder.created(pending);
    const started = { ...pending, status: 'PROCESSING' as const, startedAt: new Date(4_000), progress: { step: 2, totalSteps: 10 } };
    recorder.changed(pending, started);
    now = 14_000; // 4 steps in 4 s
    const later = { ...started, progress: { step: 6, totalSteps: 10 } };
    recorder.changed(started, later);
    now = 15_000;
    recorder.changed(later, { ...later, status: 'FAILURE', finishedAt: new Date(15_000), error: { code: 'SOMETHING_NEW', message: 'x' } });

    const m = parseMetrics(await metrics.registry.metrics());
    expect(sampleValue(m, 'sd_job_queue_wait_seconds_sum')).toBe(3);
    expect(sampleValue(m, 'sd_job_step_seconds_count')).toBe(4);
    expect(sampleValue(m, 'sd_job_step_seconds_sum')).toBe(4);
    expect(sampleValue(m, 'sd_job_generation_seconds_sum', { status: 'FAILURE' })).toBe(11);
    // An engine's own code outside the known set is bucketed, so labels stay bounded.
    expect(sampleValue(m, 'sd_engine_errors_total', { code: 'OTHER' })).toBe(1);
    expect(sampleValue(m, 'sd_jobs_finished_total', { mode: 'text2image', status: 'FAILURE' })).toBe(1);
  });
});
