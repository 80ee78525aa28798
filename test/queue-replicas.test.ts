import { existsSync, rmSync } from 'node:fs';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { ListObjectsV2Command } from '@aws-sdk/client-s3';
import { WsClients } from './helpers/ws-clients.js';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Image2ImageDocument, InpaintingDocument, JobDocument, Text2ImageDocument } from '../src/client/generated/graphql.js';
import { TestS3Server } from './fixtures/s3-server.js';
import { freePort } from './helpers/crash-harness.js';
import { follow } from './helpers/follow.js';
import { fetchMetricsText, parseMetrics, sampleValue, type Sample } from './helpers/metrics.js';
import {
  killProcess,
  newDataDir,
  queueEnv,
  removePrefix,
  sharedPostgres,
  startWorkerProcess,
  testPrefix,
  type SharedStore,
  type WorkerProcess,
} from './helpers/queue.js';
import { startServerProcess, type ServerProcess } from './helpers/server-process.js';
import { gql } from './helpers/test-server.js';

/**
 * Beyond one machine, as operators run it: two API processes (npm start's src/main.ts) and two
 * worker processes (npm run worker's src/worker.ts), on Postgres (a schema of this file's) and
 * the real Redis, on loopback. Jobs of the three modes are created on replica A and followed by
 * subscribers on replica B; their images are downloaded from both replicas. Once with the image
 * store in a folder every process shares (one machine), once in an S3 bucket (the s3rver test
 * fixture). Each worker serves its metrics on METRICS_PORT.
 */

/** A 128×128 init image and a mask of its right half, as PNG data: URLs. */
async function images(): Promise<{ init: string; mask: string }> {
  const size = 128;
  const raw = Buffer.alloc(size * size * 3);
  for (let y = 0; y < size; y++)
    for (let x = 0; x < size; x++) raw.set([(40 + x) % 256, (120 + y) % 256, (x + y) % 256], (y * size + x) * 3);
  const maskRaw = Buffer.alloc(size * size);
  for (let y = 0; y < size; y++) for (let x = 0; x < size; x++) maskRaw[y * size + x] = x >= size / 2 ? 255 : 0;
  const png = (buf: Buffer, channels: 1 | 3) =>
    sharp(buf, { raw: { width: size, height: size, channels } })
      .png()
      .toBuffer();
  const dataUrl = (b: Buffer) => `data:image/png;base64,${b.toString('base64')}`;
  return { init: dataUrl(await png(raw, 3)), mask: dataUrl(await png(maskRaw, 1)) };
}

/** Long enough at this size that a subscriber on the other replica sees steps go by. */
const STEPS = { width: 256, height: 256, numInferenceSteps: 40, safetyChecker: false };

for (const imageStore of ['file', 's3'] as const) {
  describe(`two API processes and two worker processes on Postgres and Redis, images in ${imageStore === 'file' ? 'a shared folder' : 'S3'}`, () => {
    const prefix = testPrefix(`queue-replicas-${imageStore}`);
    const dataDir = newDataDir();
    const s3 = new TestS3Server(['images']);
    const sockets = new WsClients();
    const workers: WorkerProcess[] = [];
    const metricsPorts: number[] = [];
    let shared: SharedStore;
    let a: ServerProcess;
    let b: ServerProcess;
    let urlA: string;
    let urlB: string;
    let key: string;

    const ws = (url: string) => sockets.open(url, key);

    beforeAll(async () => {
      shared = await sharedPostgres(`queue_replicas_${imageStore}`);
      let storeEnv: Record<string, string>;
      if (imageStore === 's3') {
        await s3.start();
        storeEnv = s3.env('s3://images/replicas/');
      } else {
        storeEnv = { IMAGE_STORE_URL: pathToFileURL(path.join(dataDir, 'shared-images')).href };
      }
      const env = queueEnv(prefix, dataDir, shared, { ...storeEnv, PORT: '0', HOST: '127.0.0.1', LOG_LEVEL: 'info' });
      // A first: it builds the tiny models in DATA_DIR (which the others then find there), applies
      // the migrations, and prints the first key, which every process shares through Postgres.
      a = startServerProcess(env, 120_000);
      urlA = await a.url;
      key = a.printedKey()!;
      expect(key).toBeTruthy();
      b = startServerProcess(env, 90_000);
      for (let i = 0; i < 2; i++) {
        const port = await freePort();
        metricsPorts.push(port);
        workers.push(startWorkerProcess({ ...env, METRICS_PORT: String(port) }, 90_000));
      }
      [urlB] = await Promise.all([b.url, ...workers.map((w) => w.ready)]);
    }, 240_000);

    afterAll(async () => {
      await sockets.disposeAll();
      for (const w of workers) await killProcess(w, 'SIGTERM');
      for (const p of [b, a]) if (p) await killProcess(p, 'SIGTERM');
      await shared?.drop();
      await removePrefix(prefix);
      await s3.destroy();
      rmSync(dataDir, { recursive: true, force: true });
    });

    it('jobs of all three modes created on A run on the workers; subscribers on B see their progress; both replicas serve their images', async () => {
      const { init, mask } = await images();
      const created = await Promise.all([
        gql(urlA, Text2ImageDocument, { input: { prompt: 'a lighthouse at dusk', ...STEPS } }, key).then((r) => r.data?.text2image),
        gql(urlA, Image2ImageDocument, { input: { prompt: 'a harbour, oil', initImage: init, strength: 0.8, ...STEPS } }, key).then(
          (r) => r.data?.image2image,
        ),
        gql(urlA, InpaintingDocument, { input: { prompt: 'a red door', initImage: init, maskImage: mask, ...STEPS } }, key).then(
          (r) => r.data?.inpainting,
        ),
      ]);
      expect(created.map((j) => j?.status)).toEqual(['PENDING', 'PENDING', 'PENDING']);
      const ids = created.map((j) => j!.id);
      const subs = ids.map((id) => follow(ws(urlB), id, 120_000));
      const ends = await Promise.all(subs.map((s) => s.done));
      expect(ends.map((j) => [j.mode, j.status])).toEqual([
        ['TEXT2IMAGE', 'SUCCESS'],
        ['IMAGE2IMAGE', 'SUCCESS'],
        ['INPAINTING', 'SUCCESS'],
      ]);
      for (const sub of subs) {
        // Progress made on a worker reached the subscriber on the other replica, in order.
        const steps = sub.values.filter((v) => v.job.status === 'PROCESSING' && v.job.progress.step > 0).map((v) => v.job.progress.step);
        expect(steps.length).toBeGreaterThan(0);
        expect(steps).toEqual([...steps].sort((x, y) => x - y));
      }

      for (const [i, end] of ends.entries()) {
        // B's subscriber got B's download URLs; A's answer has A's. The same bytes from both.
        const onA = (await gql(urlA, JobDocument, { id: ids[i]! }, key)).data!.job!;
        expect(end.downloadUrls).toHaveLength(1);
        expect(onA.downloadUrls).toHaveLength(1);
        expect(end.downloadUrls[0]!.startsWith(`${urlB}/images/`)).toBe(true);
        expect(onA.downloadUrls[0]!.startsWith(`${urlA}/images/`)).toBe(true);
        const [fromA, fromB] = await Promise.all([fetch(onA.downloadUrls[0]!), fetch(end.downloadUrls[0]!)]);
        expect([fromA.status, fromB.status]).toEqual([200, 200]);
        expect(fromA.headers.get('content-type')).toBe('image/png');
        const [bytesA, bytesB] = await Promise.all([fromA.arrayBuffer(), fromB.arrayBuffer()]);
        expect(Buffer.from(bytesA).equals(Buffer.from(bytesB))).toBe(true);
        expect((await sharp(Buffer.from(bytesA)).metadata()).width).toBe(256);
      }

      // Where the images are: in the bucket, or in the shared folder; the record in Postgres, not SQLite.
      const names = ends.map((j) => new URL(j.downloadUrls[0]!).pathname.split('/').pop()!);
      if (imageStore === 's3') {
        const listed = await s3.client().send(new ListObjectsV2Command({ Bucket: 'images', Prefix: 'replicas/' }));
        expect((listed.Contents ?? []).map((o) => o.Key).sort()).toEqual(names.map((n) => `replicas/${n}`).sort());
      } else {
        for (const n of names) expect(existsSync(path.join(dataDir, 'shared-images', n))).toBe(true);
      }
      expect(existsSync(path.join(dataDir, 'sd-api.sqlite'))).toBe(false);

      // The workers ran them (not the API processes) and count them on their METRICS_PORT.
      for (const id of ids) expect(workers.some((w) => w.logs().some((l) => l.jobId === id && l.msg === 'running the job'))).toBe(true);
      const scraped: Sample[][] = await Promise.all(
        metricsPorts.map(async (p) => parseMetrics(await fetchMetricsText(`http://127.0.0.1:${p}`))),
      );
      const total = (name: string, labels: Record<string, string> = {}) =>
        scraped.reduce((sum, s) => sum + sampleValue(s, name, labels), 0);
      for (const mode of ['text2image', 'image2image', 'inpainting']) {
        expect(total('sd_jobs_finished_total', { mode, status: 'SUCCESS' })).toBe(1);
        expect(total('sd_job_generation_seconds_count', { mode, status: 'SUCCESS' })).toBe(1);
        expect(total('sd_job_step_seconds_count', { mode })).toBeGreaterThan(0);
      }
      expect(total('sd_jobs_finished_total')).toBe(3);
      expect(total('sd_engine_errors_total')).toBe(0);
      expect(total('sd_worker_jobs_running')).toBe(0);
      // Each worker's registry is its own: what one ran the other does not count.
      const perWorker = scraped.map((s) => sampleValue(s, 'sd_jobs_finished_total'));
      expect(perWorker.reduce((x, y) => x + y, 0)).toBe(3);
      // The API replicas ran none of them, and see an empty queue.
      for (const url of [urlA, urlB]) {
        const api = parseMetrics(await fetchMetricsText(url));
        expect(sampleValue(api, 'sd_jobs_finished_total')).toBe(0);
        expect(sampleValue(api, 'sd_jobs_created_total')).toBe(url === urlA ? 3 : 0);
        expect(sampleValue(api, 'sd_queue_depth')).toBe(0);
      }
    }, 180_000);
  });
}
