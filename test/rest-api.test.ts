import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { JobDocument, Text2ImageDocument } from '../src/client/generated/graphql.js';
import { startTestServer, waitFor, type TestServer, LOCAL_ENGINE } from './helpers/test-server.js';

/** The contract's REST API, driven as its users drive it: Node's fetch, snake_case JSON, API-Key. */
describe('REST API of the contract', () => {
  let server: TestServer;
  let images: Server;
  let imagesUrl: string;

  const example = {
    model_id: '38ff8ad2-d62a-457c-8b2c-182e48e564f2',
    prompt: 'A handsome man in a white shirt in the woods, close-up, photorealisitic',
    negative_prompt:
      'error, cropped, worst quality, low quality, duplicate, bad proportions, incomplete subject, deformed eyes, UnrealisiticDream',
    num_inference_steps: 20,
    refiner: false,
    samples: 1,
    guidance_scale: 7.5,
    width: 512,
    height: 512,
    embeddings: 'f84133b4-aad8-44be-b9ce-7e7e3a8c111f',
    seed: 12345,
    safety_checker: true,
  };

  beforeAll(async () => {
    server = await startTestServer({
      env: { ...LOCAL_ENGINE, IMAGE_FETCH_ALLOW_HOSTS: '127.0.0.1' },
    });
    // Stands in for the contract's https://…/cottage.png and mask_image.png, on loopback.
    const cottage = await sharp({ create: { width: 96, height: 64, channels: 3, background: '#7a9' } })
      .png()
      .toBuffer();
    const mask = await sharp({ create: { width: 96, height: 64, channels: 3, background: '#fff' } })
      .png()
      .toBuffer();
    images = createServer((req, res) => {
      const png = req.url === '/mask_image.png' ? mask : cottage;
      res.writeHead(200, { 'content-type': 'image/png' }).end(png);
    });
    await new Promise<void>((r) => images.listen(0, '127.0.0.1', r));
    imagesUrl = `http://127.0.0.1:${(images.address() as AddressInfo).port}`;
  }, 60_000);
  afterAll(async () => {
    await server.stop();
    images.closeAllConnections();
    await new Promise((r) => images.close(r));
  });

  const post = (mode: string, body: unknown, init: { key?: string | null; contentType?: string | null; raw?: string } = {}) => {
    const headers: Record<string, string> = {};
    const key = init.key === undefined ? server.key : init.key;
    if (key) headers['API-Key'] = key;
    const contentType = init.contentType === undefined ? 'application/json' : init.contentType;
    if (contentType) headers['content-type'] = contentType;
    return fetch(`${server.url}/sd/${mode}/v1`, { method: 'POST', headers, body: init.raw ?? JSON.stringify(body) });
  };
  const status = (mode: string, id: string, key: string = server.key) =>
    fetch(`${server.url}/sd/${mode}/v1/status/${id}`, { headers: { 'API-Key': key } });
  const untilDone = async (mode: string, id: string) => {
    let last: Record<string, unknown> = {};
    await waitFor(async () => {
      last = (await (await status(mode, id)).json()) as Record<string, unknown>;
      return last.status !== 'PENDING';
    }, 30_000);
    return last;
  };

  it("runs the contract's text2image example: PENDING + id, then SUCCESS + download_urls that serve PNGs", async () => {
    const res = await post('text2image', example);
    expect(res.status).toBe(200);
    const created = (await res.json()) as { status: string; id: string };
    expect(created.status).toBe('PENDING');
    expect(typeof created.id).toBe('string');
    const done = await untilDone('text2image', created.id);
    expect(done.status).toBe('SUCCESS');
    const urls = done.download_urls as string[];
    expect(urls).toHaveLength(1);
    const png = await fetch(urls[0]!);
    expect(png.headers.get('content-type')).toBe('image/png');
    expect((await sharp(Buffer.from(await png.arrayBuffer())).metadata()).width).toBe(512);
  });

  it('runs image2image and inpainting with image URLs', async () => {
    const i2i = await post('image2image', {
      ...example,
      model_id: 'sd1.5',
      num_inference_steps: 37,
      guidance_scale: 8.5,
      init_image: `${imagesUrl}/cottage.png`,
      width: 64,
      height: 64,
    });
    const a = (await i2i.json()) as { id: string };
    expect((await untilDone('image2image', a.id)).status).toBe('SUCCESS');
    const inp = await post('inpainting', {
      ...example,
      init_image: `${imagesUrl}/img2img.png`,
      mask_image: `${imagesUrl}/mask_image.png`,
      width: 64,
      height: 64,
    });
    const b = (await inp.json()) as { id: string };
    expect((await untilDone('inpainting', b.id)).status).toBe('SUCCESS');
  });

  it("takes inpainting's mask_blur and keep_unmasked (echoed over GraphQL) and refuses bad ones naming the field in snake_case", async () => {
    const inpainting = {
      prompt: 'a red door',
      init_image: `${imagesUrl}/img2img.png`,
      mask_image: `${imagesUrl}/mask_image.png`,
      width: 64,
      height: 64,
      num_inference_steps: 2,
    };
    const res = await post('inpainting', { ...inpainting, mask_blur: 0, keep_unmasked: false });
    expect(res.status).toBe(200);
    const created = (await res.json()) as { status: string; id: string };
    expect(created.status).toBe('PENDING');
    // Only the contract's names: a camelCase twin is ignored, as for every field.
    const twin = (await (await post('inpainting', { ...inpainting, maskBlur: 0, keepUnmasked: false })).json()) as { id: string };
    const defaults = (await (await post('inpainting', inpainting)).json()) as { id: string };
    const parameters = async (id: string) => (await server.gql(JobDocument, { id })).data!.job!.parameters;
    expect(await parameters(created.id)).toMatchObject({ maskBlur: 0, keepUnmasked: false, noise: 'TORCH' });
    expect(await parameters(twin.id)).toMatchObject({ maskBlur: 4, keepUnmasked: true });
    expect(await parameters(defaults.id)).toMatchObject({ maskBlur: 4, keepUnmasked: true });
    expect((await untilDone('inpainting', created.id)).status).toBe('SUCCESS');

    for (const [extra, field, code] of [
      [{ mask_blur: -1 }, 'mask_blur', 'OUT_OF_RANGE'],
      [{ mask_blur: 65 }, 'mask_blur', 'OUT_OF_RANGE'],
      [{ mask_blur: 1.5 }, 'mask_blur', 'INVALID_TYPE'],
      [{ mask_blur: '4' }, 'mask_blur', 'INVALID_TYPE'],
      [{ keep_unmasked: 'no' }, 'keep_unmasked', 'INVALID_TYPE'],
    ] as const) {
      const refused = await post('inpainting', { ...inpainting, ...extra });
      expect(refused.status, JSON.stringify(extra)).toBe(400);
      const body = (await refused.json()) as { status: string; error: string; errors: { field: string; code: string }[] };
      expect(body.status).toBe('FAILURE');
      expect(body.errors, JSON.stringify(extra)).toEqual([expect.objectContaining({ field, code })]);
      expect(body.error).toMatch(new RegExp(`^${field}: `));
    }
    const range = (await (await post('inpainting', { ...inpainting, mask_blur: 65 })).json()) as { error: string };
    expect(range.error).toBe('mask_blur: must be between 0 and 64');
  });

  it('refuses image URLs that point inside the network (cloud metadata, loopback not allowed) with the field and reason', async () => {
    for (const [url, why] of [
      ['http://169.254.169.254/latest/meta-data/', /init_image: .*169\.254\.169\.254.*link-local/],
      ['http://[::1]:9/x.png', /init_image: .*loopback/],
      ['file:///etc/passwd', /init_image: must be an http\(s\) URL/],
    ] as const) {
      // IP literals and schemes are refused at once; names are checked after DNS when fetched.
      const res = await post('image2image', { ...example, init_image: url, width: 64, height: 64 });
      expect(res.status, url).toBe(400);
      const body = (await res.json()) as { status: string; error: string; errors: { field: string }[] };
      expect(body.error, url).toMatch(why);
      expect(body.errors[0]!.field).toBe('init_image');
    }
  });

  it('takes JSON sent as text/plain, with no content type, or form-encoded (as Python requests data= sends it)', async () => {
    const small = { prompt: 'a cat', width: 64, height: 64, num_inference_steps: 2 };
    for (const contentType of ['text/plain', null, 'application/x-www-form-urlencoded']) {
      const res = await post('text2image', small, { contentType });
      expect(res.status, String(contentType)).toBe(200);
      expect(((await res.json()) as { status: string }).status).toBe('PENDING');
    }
  });

  it('refuses bad input with 400 naming the field in snake_case, creating no job', async () => {
    const res = await post('text2image', { ...example, width: 513, negative_prompt: Array.from({ length: 80 }, () => 'cat').join(' ') });
    expect(res.status).toBe(400);
    const body = (await res.json()) as { status: string; error: string; errors: { field: string; code: string }[] };
    expect(body.status).toBe('FAILURE');
    expect(body.error).toMatch(/width: must be a multiple of 8/);
    expect(body.errors.map((e) => e.field)).toEqual(['width']);
    const tokens = await post('text2image', { ...example, negative_prompt: Array.from({ length: 80 }, () => 'cat').join(' ') });
    expect(((await tokens.json()) as { errors: { field: string; code: string }[] }).errors).toEqual([
      expect.objectContaining({ field: 'negative_prompt', code: 'TOO_MANY_TOKENS' }),
    ]);
    const missing = await post('inpainting', { prompt: 'x', init_image: `${imagesUrl}/a.png` });
    expect(((await missing.json()) as { errors: { field: string }[] }).errors.map((e) => e.field)).toEqual(['mask_image']);
    const notJson = await post('text2image', null, { raw: 'prompt=a cat' });
    expect(notJson.status).toBe(400);
    expect(((await notJson.json()) as { error: string }).error).toMatch(/not JSON/);
  });

  it('answers 401 without a valid key and 404 for unknown ids and for another key’s jobs alike', async () => {
    expect((await post('text2image', example, { key: null })).status).toBe(401);
    const wrong = await post('text2image', example, { key: 'sdk_wrong' });
    expect(wrong.status).toBe(401);
    expect(await wrong.json()).toEqual({ status: 'FAILURE', error: 'the API key is not valid' });

    const mine = (await (await post('text2image', { prompt: 'mine', width: 64, height: 64 })).json()) as { id: string };
    const other = await server.newKey('other');
    const theirs = await status('text2image', mine.id, other);
    const nobody = await status('text2image', '00000000-0000-4000-8000-000000000000', other);
    expect([theirs.status, nobody.status]).toEqual([404, 404]);
    expect(((await theirs.json()) as { status: string }).status).toBe('FAILURE');
    expect((await fetch(`${server.url}/sd/text2image/v1`, { headers: { 'API-Key': server.key } })).status).toBe(405);
  });

  it('shares jobs with GraphQL both ways', async () => {
    const rest = (await (await post('text2image', { prompt: 'over REST', width: 64, height: 64 })).json()) as { id: string };
    const seen = await server.gql(JobDocument, { id: rest.id });
    expect(seen.data!.job!.parameters.prompt).toBe('over REST');

    const gql = await server.gql(Text2ImageDocument, { input: { prompt: 'over GraphQL', width: 64, height: 64, numInferenceSteps: 2 } });
    const done = await untilDone('text2image', gql.data!.text2image.id);
    expect(done.status).toBe('SUCCESS');
  });
});
