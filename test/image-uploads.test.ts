import { print } from 'graphql';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Image2ImageDocument, InpaintingDocument, JobStatusDocument } from '../src/client/generated/graphql.js';
import { collect, startTestServer, type TestServer, LOCAL_ENGINE } from './helpers/test-server.js';

/** Init and mask images uploaded as files (the GraphQL multipart request spec), on the local engine. */
describe('images uploaded as files', () => {
  let server: TestServer;

  beforeAll(async () => {
    server = await startTestServer({ env: { ...LOCAL_ENGINE } });
  }, 60_000);
  afterAll(() => server.stop());

  const png = (rgb: [number, number, number]) =>
    sharp({ create: { width: 64, height: 64, channels: 3, background: { r: rgb[0], g: rgb[1], b: rgb[2] } } })
      .png()
      .toBuffer();

  /** One multipart request: operations, the map of files to variables, the files. */
  async function upload(query: string, input: Record<string, unknown>, files: Record<string, Buffer>) {
    const form = new FormData();
    const variables = { input: { ...input, ...Object.fromEntries(Object.keys(files).map((k) => [k, null])) } };
    form.set('operations', JSON.stringify({ query, variables }));
    form.set('map', JSON.stringify(Object.fromEntries(Object.keys(files).map((k, i) => [String(i), [`variables.input.${k}`]]))));
    Object.values(files).forEach((data, i) => form.set(String(i), new Blob([new Uint8Array(data)]), `file${i}.png`));
    const res = await fetch(`${server.url}/graphql`, { method: 'POST', headers: { 'api-key': server.key }, body: form });
    return (await res.json()) as {
      data?: Record<string, { id: string; parameters: { initImage: string; maskImage: string | null } }>;
      errors?: { message: string; extensions: { issues?: { path: string[]; message: string }[] } }[];
    };
  }
  const common = { prompt: 'a blue door', width: 64, height: 64, numInferenceSteps: 4, safetyChecker: false };

  it('takes the init image of image2image as initImageFile, and the job runs to SUCCESS', async () => {
    const body = await upload(print(Image2ImageDocument), common, { initImageFile: await png([200, 40, 40]) });
    expect(body.errors).toBeUndefined();
    const job = body.data!.image2image!;
    expect(job.parameters.initImage).toMatch(/^data:image\/png;base64,/);
    const { values } = await collect(server.ws(), JobStatusDocument, { id: job.id }, 30_000);
    expect(values.at(-1)!.jobStatus.status).toBe('SUCCESS');
  });

  it('takes both images of inpainting as files', async () => {
    const body = await upload(print(InpaintingDocument), common, {
      initImageFile: await png([40, 200, 40]),
      maskImageFile: await png([255, 255, 255]),
    });
    expect(body.errors).toBeUndefined();
    const { values } = await collect(server.ws(), JobStatusDocument, { id: body.data!.inpainting!.id }, 30_000);
    expect(values.at(-1)!.jobStatus.status).toBe('SUCCESS');
  });

  it('refuses a file that is not an image, and a URL and a file for the same image, naming the field', async () => {
    const text = await upload(print(Image2ImageDocument), common, { initImageFile: Buffer.from('hello, not an image') });
    expect(text.errors![0]!.extensions.issues).toEqual([
      expect.objectContaining({ path: ['input', 'initImageFile'], message: 'is not a PNG, JPEG or WebP image' }),
    ]);
    const both = await upload(
      print(Image2ImageDocument),
      { ...common, initImage: 'https://example.com/a.png' },
      { initImageFile: await png([0, 0, 0]) },
    );
    expect(both.errors![0]!.extensions.issues).toEqual([
      expect.objectContaining({ path: ['input', 'initImageFile'], message: 'send initImage or initImageFile, not both' }),
    ]);
  });
});
