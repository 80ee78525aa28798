import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { JobStatusDocument, Text2ImageDocument, WatchJobDocument } from '../src/client/generated/graphql.js';
import { previewPixels } from '../src/diffusion/preview.js';
import { collect, startTestServer, type TestServer, LOCAL_ENGINE } from './helpers/test-server.js';

describe('preview pixels (the latent-to-RGB approximation)', () => {
  const plane = 2 * 3; // 2 rows, 3 columns
  const latents = (values: [number, number, number, number]) => {
    const x = new Float32Array(4 * plane);
    values.forEach((v, c) => x.fill(v, c * plane, (c + 1) * plane));
    return x;
  };

  it('maps each latent channel through its RGB factors, 0 to mid-grey, clamped to [-1, 1]', () => {
    const zero = previewPixels(latents([0, 0, 0, 0]), latents([0, 0, 0, 0]), 0, 'epsilon', 2, 3);
    expect([...zero.rgb]).toEqual(Array(plane * 3).fill(128));
    expect([zero.width, zero.height]).toEqual([3, 2]);
    // Channel 0 at 1: (0.3512, 0.2297, 0.3227) -> (1 + v) / 2 * 255.
    const red = previewPixels(latents([1, 0, 0, 0]), latents([0, 0, 0, 0]), 0, 'epsilon', 2, 3);
    expect([...red.rgb.subarray(0, 3)]).toEqual([172, 157, 169]);
    const bright = previewPixels(latents([9, 9, 0, 0]), latents([0, 0, 0, 0]), 0, 'epsilon', 2, 3);
    expect([...bright.rgb.subarray(0, 3)]).toEqual([255, 255, 255]);
  });

  it('shows the denoised estimate x0, not the noisy sample: (x - sigma * eps) * sqrt(1 + sigma^2) for epsilon models', () => {
    const sigma = 2;
    const x0 = 1;
    const eps = 0.5;
    // The UNet's input in variance-preserving form: (x0 + sigma * eps) / sqrt(1 + sigma^2).
    const scaled = (x0 + sigma * eps) / Math.sqrt(1 + sigma * sigma);
    const out = previewPixels(latents([scaled, 0, 0, 0]), latents([eps, 0, 0, 0]), sigma, 'epsilon', 2, 3);
    expect([...out.rgb.subarray(0, 3)]).toEqual([172, 157, 169]);
    // v-prediction: v = sqrt(a) * eps - sqrt(1 - a) * x0; x0 = sqrt(a) * x - sqrt(1 - a) * v.
    const a = 1 / (1 + sigma * sigma);
    const v = Math.sqrt(a) * eps - Math.sqrt(1 - a) * x0;
    const xv = Math.sqrt(a) * x0 + Math.sqrt(1 - a) * eps;
    const outV = previewPixels(latents([xv, 0, 0, 0]), latents([v, 0, 0, 0]), sigma, 'v_prediction', 2, 3);
    expect([...outV.rgb.subarray(0, 3)]).toEqual([172, 157, 169]);
  });
});

/** Through the API on the local engine (tiny models): previews only for those who select them. */
describe('live previews in jobStatus', () => {
  let server: TestServer;

  beforeAll(async () => {
    server = await startTestServer({
      env: { ...LOCAL_ENGINE, RATE_LIMIT_JOBS_BURST: '1000' },
    });
  }, 60_000);
  afterAll(() => server.stop());

  const previewsMade = async () => (await server.metrics()).sd_previews_total ?? NaN;
  // Long enough on the tiny models (a second or more) for several previews 250 ms apart.
  const create = async () => {
    const created = await server.gql(Text2ImageDocument, {
      input: { prompt: 'a harbour at dusk', width: 512, height: 384, numInferenceSteps: 100, safetyChecker: false },
    });
    expect(created.errors).toBeUndefined();
    return created.data!.text2image.id;
  };

  it('streams JPEG previews, at most 256 px and the image aspect, while someone selects progress.preview', async () => {
    const before = await previewsMade();
    const id = await create();
    const { values, errors } = await collect(server.ws(), WatchJobDocument, { id }, 60_000);
    expect(errors).toEqual([]);
    const previews = values.filter((v) => v.jobStatus.progress.preview);
    expect(previews.length).toBeGreaterThan(0);
    expect(values.at(-1)!.jobStatus.status).toBe('SUCCESS');

    const first = previews[0]!.jobStatus;
    expect(first.status).toBe('PROCESSING');
    expect(first.progress.step).toBeLessThan(first.progress.totalSteps);
    const url = first.progress.preview!;
    expect(url).toMatch(/^data:image\/jpeg;base64,/);
    const meta = await sharp(Buffer.from(url.split(',')[1]!, 'base64')).metadata();
    expect(meta.format).toBe('jpeg');
    expect([meta.width, meta.height]).toEqual([256, 192]); // 512 x 384, scaled to 256 on the long side

    // At most one every 250 ms: a job of about a second cannot have made many.
    const made = (await previewsMade()) - before;
    expect(made).toBeGreaterThanOrEqual(previews.length);
    const seconds = (Date.parse(values.at(-1)!.jobStatus.finishedAt!) - Date.parse(first.startedAt!)) / 1000;
    expect(made).toBeLessThanOrEqual(Math.ceil(seconds / 0.25) + 1);
  });

  it('makes none for a job nobody watches, nor for subscribers that do not select the preview', async () => {
    const before = await previewsMade();
    const id = await create();
    const { values, errors } = await collect(server.ws(), JobStatusDocument, { id }, 60_000);
    expect(errors).toEqual([]);
    expect(values.at(-1)!.jobStatus.status).toBe('SUCCESS');
    expect(values.some((v) => v.jobStatus.progress.step > 0 && v.jobStatus.progress.step < 100)).toBe(true);
    expect(await previewsMade()).toBe(before);
  });
});

/** A gateway (ENGINE=imagepipeline) in front of a worker running the local engine: previews pass along. */
describe('live previews through a gateway', () => {
  let worker: TestServer;
  let gateway: TestServer;

  beforeAll(async () => {
    worker = await startTestServer({
      env: { ...LOCAL_ENGINE, RATE_LIMIT_JOBS_BURST: '1000' },
    });
    gateway = await startTestServer({
      env: {
        ENGINE: 'imagepipeline',
        IMAGEPIPELINE_URL: worker.url,
        IMAGEPIPELINE_API_KEY: worker.key,
        POLL_MIN_INTERVAL_MS: '5',
        POLL_MAX_INTERVAL_MS: '20',
      },
    });
  }, 60_000);
  afterAll(async () => {
    await gateway?.stop();
    await worker?.stop();
  });

  it("streams the worker's previews to a gateway subscriber who selects them, and the worker makes none otherwise", async () => {
    const create = async () =>
      (
        await gateway.gql(Text2ImageDocument, {
          input: { prompt: 'a harbour at dusk', width: 256, height: 192, numInferenceSteps: 60, safetyChecker: false },
        })
      ).data!.text2image.id;
    const before = (await worker.metrics()).sd_previews_total!;
    const watched = await collect(gateway.ws(), WatchJobDocument, { id: await create() }, 60_000);
    expect(watched.errors).toEqual([]);
    expect(watched.values.at(-1)!.jobStatus.status).toBe('SUCCESS');
    const previews = watched.values.flatMap((v) => (v.jobStatus.progress.preview ? [v.jobStatus.progress.preview] : []));
    expect(previews.length).toBeGreaterThan(0);
    expect(previews[0]).toMatch(/^data:image\/jpeg;base64,/);
    const made = (await worker.metrics()).sd_previews_total!;
    expect(made).toBeGreaterThan(before);

    // Nobody watches this one on the gateway: the worker is never asked, so it makes none.
    await new Promise((r) => setTimeout(r, 50));
    const plain = await collect(gateway.ws(), JobStatusDocument, { id: await create() }, 60_000);
    expect(plain.values.at(-1)!.jobStatus.status).toBe('SUCCESS');
    expect((await worker.metrics()).sd_previews_total).toBe(made);
  });
});
