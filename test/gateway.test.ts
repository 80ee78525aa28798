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
 * A gateway in front of one upstream, both real server processes on loopback: the upstream runs
 * the local engine on the tiny models; the gateway runs the imagepipeline engine pointed at it.
 * The upstream is killed with SIGKILL in the middle of a stream of jobs, then restarted.
 * (Several machines are the queue's: test/queue-processes.test.ts.)
 */

interface Upstream {
  dataDir: string;
  proc: ServerProcess;
  url: string;
  key: string;
}

const quiet = { LOG_LEVEL: process.env.TEST_LOG_LEVEL ?? 'warn', HOST: '127.0.0.1' };
const PNG_MAGIC = Buffer.from([0x89, 0x50, 0x4e, 0x47]);

async function startUpstream(port = '0', dataDir = mkdtempSync(path.join(tmpdir(), 'sd-api-upstream-'))): Promise<Upstream> {
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
  return { dataDir, proc, url, key: proc.printedKey() ?? '' };
}

/** The jobs the upstream has been given, over its own GraphQL API. */
async function jobsOn(upstream: Upstream): Promise<JobFieldsFragment[]> {
  const res = await gql(upstream.url, JobsDocument, { first: 100 }, upstream.key);
  expect(res.errors).toBeUndefined();
  return res.data!.jobs.edges.map((e) => e.node);
}

async function pngDataUrl(size: number, colour: string): Promise<string> {
  const png = await sharp({ create: { width: size, height: size, channels: 3, background: colour } })
    .png()
    .toBuffer();
  return `data:image/png;base64,${png.toString('base64')}`;
}

/** How long the gateway lets its upstream stay unreachable for a job before failing it. */
const FAILURE_BUDGET_MS = 3_000;

describe('a gateway in front of one upstream (two processes)', () => {
  let upstream: Upstream;
  let gateway: ServerProcess;
  let gatewayUrl: string;
  let gatewayKey: string;
  const dirs: string[] = [];

  beforeAll(async () => {
    upstream = await startUpstream();
    dirs.push(upstream.dataDir);
    expect(upstream.key).toMatch(/^sdk_/);
    const gatewayDir = mkdtempSync(path.join(tmpdir(), 'sd-api-gateway-'));
    dirs.push(gatewayDir);
    gateway = startServerProcess({
      ...quiet,
      PORT: '0',
      DATA_DIR: gatewayDir,
      ENGINE: 'imagepipeline',
      IMAGEPIPELINE_URL: upstream.url,
      IMAGEPIPELINE_API_KEY: upstream.key,
      IMAGEPIPELINE_RETRIES: '1',
      IMAGEPIPELINE_TIMEOUT_MS: '5000',
      IMAGEPIPELINE_PROBE_INTERVAL_MS: '200',
      POLL_FAILURE_BUDGET_MS: String(FAILURE_BUDGET_MS),
      POLL_MIN_INTERVAL_MS: '50',
      POLL_MAX_INTERVAL_MS: '200',
    });
    gatewayUrl = await gateway.url;
    gatewayKey = gateway.printedKey()!;
  }, 180_000);

  afterAll(async () => {
    for (const p of [gateway, upstream?.proc]) {
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

  const create = async (prompt: string, numInferenceSteps: number) => {
    const res = await gql(gatewayUrl, Text2ImageDocument, { input: { prompt, numInferenceSteps, safetyChecker: false } }, gatewayKey);
    expect(res.errors).toBeUndefined();
    return res.data!.text2image;
  };

  it("offers the upstream's models, asked of it over GraphQL", async () => {
    const res = await gql(gatewayUrl, ModelsDocument, {}, gatewayKey);
    const ids = res.data!.models.map((m) => m.id);
    expect(ids).toEqual(expect.arrayContaining(['tiny', 'tiny-inpainting', 'tiny-a1111']));
  });

  it('runs all three modes through the gateway; a subscriber of the gateway sees the upstream’s progress', async () => {
    const init = await pngDataUrl(64, '#808080');
    const mask = await pngDataUrl(64, '#ffffff');
    const common = { width: 64, height: 64, numInferenceSteps: 20, safetyChecker: false };
    const ws = createClient({
      url: `${gatewayUrl.replace('http', 'ws')}/graphql`,
      webSocketImpl: WebSocket,
      connectionParams: { apiKey: gatewayKey },
      retryAttempts: 0,
    });
    let t2i, i2i, inp;
    try {
      t2i = await gql(
        gatewayUrl,
        Text2ImageDocument,
        { input: { ...common, width: 512, height: 512, numInferenceSteps: 100, samples: 2, prompt: 'a lighthouse', modelId: 'tiny' } },
        gatewayKey,
      );
      expect(t2i.errors).toBeUndefined();
      // Followed from its creation, before the other creates, so its steps cannot all pass unseen.
      const followed = collect(ws, JobStatusDocument, { id: t2i.data!.text2image.id }, 60_000);
      i2i = await gql(
        gatewayUrl,
        Image2ImageDocument,
        { input: { ...common, prompt: 'a barn', initImage: init, strength: 0.6 } },
        gatewayKey,
      );
      inp = await gql(
        gatewayUrl,
        InpaintingDocument,
        { input: { ...common, prompt: 'a door', modelId: 'tiny-inpainting', initImage: init, maskImage: mask } },
        gatewayKey,
      );
      for (const res of [i2i, inp]) expect(res.errors).toBeUndefined();
      const { values, errors } = await followed;
      expect(errors).toEqual([]);
      const last = values.at(-1)!.jobStatus;
      expect(last.status).toBe('SUCCESS');
      // The upstream's steps reached the gateway's subscriber (at least one partial step seen).
      const partial = values.map((v) => v.jobStatus.progress).filter((p) => p && p.step > 0 && p.step < p.totalSteps);
      console.log(`gateway: ${partial.length} partial steps of ${values.length} values`);
      expect(partial.length).toBeGreaterThan(0);
    } finally {
      await ws.dispose();
    }
    const jobs = [await wait(t2i.data!.text2image.id), await wait(i2i.data!.image2image.id), await wait(inp.data!.inpainting.id)];
    for (const job of jobs) {
      expect(job.status, JSON.stringify(job.error)).toBe('SUCCESS');
      await expectImagesServed(job);
    }
    // The upstream ran them: the gateway's jobs are the upstream's jobs.
    expect((await jobsOn(upstream)).length).toBeGreaterThanOrEqual(3);
  }, 120_000);

  it('the upstream killed mid-stream: every job ends, those it held FAILURE with the reason, one created meanwhile waits then fails; restarted, it takes jobs again', async () => {
    const ids: string[] = [];
    for (let i = 0; i < 6; i++) ids.push((await create(`tower ${i}`, 40)).id);
    // Kill it once the gateway has one of these back and the upstream still holds others.
    await waitFor(async () => {
      const states = await Promise.all(ids.map(async (id) => (await gql(gatewayUrl, JobDocument, { id }, gatewayKey)).data!.job!.status));
      const mine = (await jobsOn(upstream)).filter((j) => j.parameters.prompt.startsWith('tower'));
      const open = mine.filter((j) => j.status === 'PENDING' || j.status === 'PROCESSING').length;
      return states.includes('SUCCESS') && open >= 2;
    }, 60_000);
    upstream.proc.child.kill('SIGKILL');
    await upstream.proc.exited;

    // A job created while it is down waits (its submission is retried) for the failure budget.
    const meanwhile = await create('while down', 5);
    expect(meanwhile.status).toBe('PENDING');
    await new Promise((r) => setTimeout(r, FAILURE_BUDGET_MS / 3));
    expect((await gql(gatewayUrl, JobDocument, { id: meanwhile.id }, gatewayKey)).data!.job!.status).toBe('PENDING');

    const finished = await Promise.all([...ids, meanwhile.id].map((id) => wait(id, 90_000)));
    const failed = finished.filter((j) => j.status === 'FAILURE');
    const succeeded = finished.filter((j) => j.status === 'SUCCESS');
    // Nothing is lost or left PENDING: each job succeeded or failed, saying why.
    expect(failed.length + succeeded.length).toBe(ids.length + 1);
    expect(finished.at(-1)!.status).toBe('FAILURE');
    expect(failed.length).toBeGreaterThanOrEqual(2); // what it held when killed, and the one created meanwhile
    expect(succeeded.length).toBeGreaterThanOrEqual(1); // what it had finished
    for (const job of failed) {
      expect(job.error!.code).toBe('ENGINE_UNREACHABLE');
      expect(job.error!.message).toMatch(/^the engine stayed unreachable: /);
      expect(job.error!.message).toContain(upstream.url);
      expect(job.error!.message).toMatch(/ECONNREFUSED/);
    }
    for (const job of succeeded) await expectImagesServed(job);
    console.log(
      `gateway: upstream killed with ${ids.length} jobs under way and one created meanwhile: ` +
        `${succeeded.length} SUCCESS, ${failed.length} FAILURE (${failed.map((j) => j.error!.code).join(', ')})`,
    );

    // Back on its address with its data: the gateway's probe finds it and sends it work again.
    const port = new URL(upstream.url).port;
    const restarted = await startUpstream(port, upstream.dataDir);
    upstream = { ...restarted, key: upstream.key };
    const before = (await jobsOn(upstream)).length;
    await new Promise((r) => setTimeout(r, 600)); // a few probe intervals
    const back = await Promise.all([0, 1, 2, 3].map((i) => create(`back ${i}`, 5)));
    for (const job of back) {
      const end = await wait(job.id);
      expect(end.status, JSON.stringify(end.error)).toBe('SUCCESS');
      await expectImagesServed(end);
    }
    expect((await jobsOn(upstream)).length).toBe(before + back.length);
  }, 240_000);
});
