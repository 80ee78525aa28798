import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { createClient } from 'graphql-ws';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import {
  Image2ImageDocument,
  InpaintingDocument,
  JobDocument,
  JobsDocument,
  JobStatusDocument,
  ModelsDocument,
  Text2ImageDocument,
  type JobFieldsFragment,
} from '../src/client/generated/graphql.js';
import { startServerProcess, type ServerProcess } from './helpers/server-process.js';
import { collect, gql, waitFor } from './helpers/test-server.js';

/**
 * A gateway in front of two workers, all three real server processes on loopback: the workers
 * run the local engine on the tiny models; the gateway runs the imagepipeline engine pointed at
 * both. One worker is killed in the middle of a stream of jobs.
 */

interface Worker {
  name: string;
  dataDir: string;
  env: Record<string, string>;
  proc: ServerProcess;
  url: string;
  key: string;
}

const quiet = { LOG_LEVEL: process.env.TEST_LOG_LEVEL ?? 'warn', HOST: '127.0.0.1' };
const PNG_MAGIC = Buffer.from([0x89, 0x50, 0x4e, 0x47]);

async function startWorker(name: string, port = '0', dataDir = mkdtempSync(path.join(tmpdir(), `sd-api-${name}-`))): Promise<Worker> {
  const env = {
    ...quiet,
    PORT: port,
    DATA_DIR: dataDir,
    ENGINE: 'local',
    LOCAL_CONCURRENCY: '1',
    POLL_MIN_INTERVAL_MS: '20',
    POLL_MAX_INTERVAL_MS: '100',
  };
  const proc = startServerProcess(env, 90_000);
  const url = await proc.url;
  return { name, dataDir, env, proc, url, key: proc.printedKey() ?? '' };
}

/** How many jobs a worker has been given, over its own GraphQL API. */
async function jobsOn(worker: Worker): Promise<JobFieldsFragment[]> {
  const res = await gql(worker.url, JobsDocument, { first: 100 }, worker.key);
  expect(res.errors).toBeUndefined();
  return res.data!.jobs.edges.map((e) => e.node);
}

async function pngDataUrl(size: number, colour: string): Promise<string> {
  const png = await sharp({ create: { width: size, height: size, channels: 3, background: colour } })
    .png()
    .toBuffer();
  return `data:image/png;base64,${png.toString('base64')}`;
}

describe('a gateway in front of two workers (three processes)', () => {
  let a: Worker;
  let b: Worker;
  let gateway: ServerProcess;
  let gatewayUrl: string;
  let gatewayKey: string;
  const dirs: string[] = [];

  beforeAll(async () => {
    a = await startWorker('worker-a');
    b = await startWorker('worker-b');
    dirs.push(a.dataDir, b.dataDir);
    expect(a.key).toMatch(/^sdk_/);
    expect(b.key).toMatch(/^sdk_/);
    const gatewayDir = mkdtempSync(path.join(tmpdir(), 'sd-api-gateway-'));
    dirs.push(gatewayDir);
    gateway = startServerProcess({
      ...quiet,
      PORT: '0',
      DATA_DIR: gatewayDir,
      ENGINE: 'imagepipeline',
      IMAGEPIPELINE_URL: `${a.url},${b.url}`,
      IMAGEPIPELINE_API_KEY: `${a.key},${b.key}`,
      IMAGEPIPELINE_RETRIES: '1',
      IMAGEPIPELINE_TIMEOUT_MS: '5000',
      IMAGEPIPELINE_PROBE_INTERVAL_MS: '200',
      IMAGEPIPELINE_WORKER_GRACE_MS: '1500',
      POLL_MIN_INTERVAL_MS: '50',
      POLL_MAX_INTERVAL_MS: '200',
    });
    gatewayUrl = await gateway.url;
    gatewayKey = gateway.printedKey()!;
  }, 180_000);

  afterAll(async () => {
    for (const p of [gateway, a?.proc, b?.proc]) {
      if (p && p.child.exitCode === null) p.child.kill('SIGKILL');
    }
    for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
  });

  const wait = (id: string, timeoutMs = 60_000) =>
    waitFor(async () => {
      const job = (await gql(gatewayUrl, JobDocument, { id }, gatewayKey)).data?.job;
      return job && ['SUCCESS', 'FAILURE', 'CANCELED'].includes(job.status) ? job : null;
    }, timeoutMs);

  const expectImagesServed = async (job: JobFieldsFragment) => {
    expect(job.images.length).toBeGreaterThan(0);
    for (const image of job.images) {
      expect(image.url.startsWith(`${gatewayUrl}/images/`)).toBe(true);
      const res = await fetch(image.url);
      expect(res.status).toBe(200);
      expect(Buffer.from(await res.arrayBuffer()).subarray(0, 4)).toEqual(PNG_MAGIC);
    }
  };

  it("offers the workers' models, asked of them over GraphQL", async () => {
    const res = await gql(gatewayUrl, ModelsDocument, {}, gatewayKey);
    const ids = res.data!.models.map((m) => m.id);
    expect(ids).toEqual(expect.arrayContaining(['tiny', 'tiny-inpainting', 'tiny-a1111']));
  });

  it('runs all three modes through the gateway; a subscriber of the gateway sees the worker’s progress', async () => {
    const init = await pngDataUrl(64, '#808080');
    const mask = await pngDataUrl(64, '#ffffff');
    const common = { width: 64, height: 64, numInferenceSteps: 20, safetyChecker: false };
    const t2i = await gql(
      gatewayUrl,
      Text2ImageDocument,
      { input: { ...common, width: 512, height: 512, numInferenceSteps: 60, prompt: 'a lighthouse', modelId: 'tiny' } },
      gatewayKey,
    );
    const i2i = await gql(
      gatewayUrl,
      Image2ImageDocument,
      { input: { ...common, prompt: 'a barn', initImage: init, strength: 0.6 } },
      gatewayKey,
    );
    const inp = await gql(
      gatewayUrl,
      InpaintingDocument,
      { input: { ...common, prompt: 'a door', modelId: 'tiny-inpainting', initImage: init, maskImage: mask } },
      gatewayKey,
    );
    for (const res of [t2i, i2i, inp]) expect(res.errors).toBeUndefined();

    const ws = createClient({
      url: `${gatewayUrl.replace('http', 'ws')}/graphql`,
      webSocketImpl: WebSocket,
      connectionParams: { apiKey: gatewayKey },
      retryAttempts: 0,
    });
    try {
      const { values, errors } = await collect(ws, JobStatusDocument, { id: t2i.data!.text2image.id }, 60_000);
      expect(errors).toEqual([]);
      const last = values.at(-1)!.jobStatus;
      expect(last.status).toBe('SUCCESS');
      // The worker's steps reached the gateway's subscriber (at least one partial step seen).
      const partial = values.map((v) => v.jobStatus.progress).filter((p) => p && p.step > 0 && p.step < p.totalSteps);
      expect(partial.length).toBeGreaterThan(0);
    } finally {
      await ws.dispose();
    }
    const jobs = [await wait(t2i.data!.text2image.id), await wait(i2i.data!.image2image.id), await wait(inp.data!.inpainting.id)];
    for (const job of jobs) {
      expect(job.status, JSON.stringify(job.error)).toBe('SUCCESS');
      await expectImagesServed(job);
    }
    // Both workers took part: each job went to the least busy one.
    expect((await jobsOn(a)).length).toBeGreaterThan(0);
    expect((await jobsOn(b)).length).toBeGreaterThan(0);
  }, 120_000);

  it('a worker killed mid-stream: its queued jobs run elsewhere, its running job fails with a reason, nothing is lost; it rejoins when back', async () => {
    const ids: string[] = [];
    for (let i = 0; i < 10; i++) {
      const res = await gql(
        gatewayUrl,
        Text2ImageDocument,
        { input: { prompt: `tower ${i}`, numInferenceSteps: 40, safetyChecker: false } },
        gatewayKey,
      );
      expect(res.errors).toBeUndefined();
      ids.push(res.data!.text2image.id);
    }
    // Kill B once it has finished one of these and still holds others.
    const before = await waitFor(async () => {
      const onB = await jobsOn(b);
      const mine = onB.filter((j) => j.parameters.prompt.startsWith('tower'));
      const done = mine.filter((j) => j.status === 'SUCCESS').length;
      const open = mine.filter((j) => j.status === 'PENDING' || j.status === 'PROCESSING').length;
      return done >= 1 && open >= 2 ? { onA: (await jobsOn(a)).length } : null;
    }, 60_000);
    b.proc.child.kill('SIGKILL');
    await b.proc.exited;

    const finished = await Promise.all(ids.map((id) => wait(id, 90_000)));
    const failed = finished.filter((j) => j.status === 'FAILURE');
    const succeeded = finished.filter((j) => j.status === 'SUCCESS');
    expect(failed.length + succeeded.length).toBe(ids.length);
    // Only what B was running (or had just finished unseen) may fail, and it says why.
    expect(failed.length).toBeLessThanOrEqual(2);
    for (const job of failed) {
      expect(job.error!.code).toBe('ENGINE_LOST_JOB');
      expect(job.error!.message).toContain(b.url);
      expect(job.error!.message).toMatch(/stopped answering/);
    }
    for (const job of succeeded) await expectImagesServed(job);
    // B's queued jobs were moved to A.
    const onAAfter = (await jobsOn(a)).length;
    expect(onAAfter).toBeGreaterThan(before.onA);
    console.log(
      `gateway: worker B killed with ${ids.length} jobs under way: ${succeeded.length} SUCCESS, ${failed.length} FAILURE ` +
        `(${failed.map((j) => j.error!.code).join(', ') || 'none'}), ${onAAfter - before.onA} moved to worker A`,
    );

    // While B is down, new jobs go to A alone.
    const onA = (await jobsOn(a)).length;
    const solo = await gql(
      gatewayUrl,
      Text2ImageDocument,
      { input: { prompt: 'solo', numInferenceSteps: 5, safetyChecker: false } },
      gatewayKey,
    );
    expect((await wait(solo.data!.text2image.id)).status).toBe('SUCCESS');
    expect((await jobsOn(a)).length).toBe(onA + 1);

    // B comes back on its address with its data: the gateway's probe finds it and sends it work again.
    const port = new URL(b.url).port;
    const restarted = await startWorker('worker-b', port, b.dataDir);
    b = { ...restarted, key: b.key };
    const bBefore = (await jobsOn(b)).length;
    await new Promise((r) => setTimeout(r, 600)); // a few probe intervals
    const pair = await Promise.all(
      [0, 1, 2, 3].map((i) =>
        gql(gatewayUrl, Text2ImageDocument, { input: { prompt: `back ${i}`, numInferenceSteps: 5, safetyChecker: false } }, gatewayKey),
      ),
    );
    for (const res of pair) expect((await wait(res.data!.text2image.id)).status).toBe('SUCCESS');
    expect((await jobsOn(b)).length).toBeGreaterThan(bBefore);
  }, 240_000);
});
