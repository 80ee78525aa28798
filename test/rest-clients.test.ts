import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { promisify } from 'node:util';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { JobDocument } from '../src/client/generated/graphql.js';
import { startTestServer, type TestServer, LOCAL_ENGINE } from './helpers/test-server.js';

/**
 * The contract's example requests sent by real clients of other languages, as their users write
 * them: Python's requests (Debian's python3-requests) and PHP's curl (php-cli, php-curl). Each
 * polls the status endpoint until SUCCESS and fetches the download URLs. .ci/run installs them.
 */
const run = promisify(execFile);
const PYTHON = '/usr/bin/python3';
const haveTools = async () => {
  const python = await run(PYTHON, ['-c', 'import requests']).then(
    () => true,
    () => false,
  );
  const php = await run('php', ['-r', 'exit(function_exists("curl_init") ? 0 : 1);']).then(
    () => true,
    () => false,
  );
  return python && php;
};
const available = await haveTools();
if (!available && !process.env.CI)
  console.log('REST client tests skipped: install python3-requests, php-cli and php-curl (Debian) to run them');

describe.skipIf(!available && !process.env.CI)('REST API with Python requests and PHP curl', () => {
  let server: TestServer;
  let images: Server;
  let imagesUrl: string;
  const base = {
    model_id: '38ff8ad2-d62a-457c-8b2c-182e48e564f2',
    prompt: 'A handsome man in a white shirt in the woods, close-up, photorealisitic',
    negative_prompt:
      'error, cropped, worst quality, low quality, duplicate, bad proportions, incomplete subject, deformed eyes, UnrealisiticDream',
    num_inference_steps: 20,
    refiner: false,
    samples: 1,
    guidance_scale: 7.5,
    width: 128,
    height: 128,
    embeddings: 'f84133b4-aad8-44be-b9ce-7e7e3a8c111f',
    seed: 12345,
    safety_checker: true,
  };
  const bodies = () => ({
    text2image: base,
    image2image: { ...base, model_id: 'sd1.5', init_image: `${imagesUrl}/cottage.png`, num_inference_steps: 37, guidance_scale: 8.5 },
    inpainting: { ...base, init_image: `${imagesUrl}/img2img.png`, mask_image: `${imagesUrl}/mask_image.png` },
  });

  beforeAll(async () => {
    expect(available, 'python3-requests, php-cli and php-curl must be installed (CI installs them)').toBe(true);
    server = await startTestServer({
      env: { ...LOCAL_ENGINE, IMAGE_FETCH_ALLOW_HOSTS: '127.0.0.1' },
    });
    const cottage = await sharp({ create: { width: 64, height: 64, channels: 3, background: '#7a9' } })
      .png()
      .toBuffer();
    const mask = await sharp({ create: { width: 64, height: 64, channels: 3, background: '#fff' } })
      .png()
      .toBuffer();
    images = createServer((req, res) =>
      res.writeHead(200, { 'content-type': 'image/png' }).end(req.url === '/mask_image.png' ? mask : cottage),
    );
    await new Promise<void>((r) => images.listen(0, '127.0.0.1', r));
    imagesUrl = `http://127.0.0.1:${(images.address() as AddressInfo).port}`;
  }, 60_000);
  afterAll(async () => {
    await server?.stop();
    images?.closeAllConnections();
    await new Promise((r) => images?.close(r));
  });

  for (const [client, command, script] of [
    ['Python requests', PYTHON, 'test/clients/contract_client.py'],
    ['PHP curl', 'php', 'test/clients/contract_client.php'],
  ] as const) {
    it(`${client}: all three modes end SUCCESS with downloadable PNGs`, async () => {
      expect(existsSync(script)).toBe(true);
      for (const [mode, body] of Object.entries(bodies())) {
        const { stdout } = await run(command, [script, server.url, server.key, mode, JSON.stringify(body)], { timeout: 90_000 });
        const result = JSON.parse(stdout.trim().split('\n').at(-1)!) as { status: string; id: string; png_bytes: number[] };
        expect(result.status, `${client} ${mode}`).toBe('SUCCESS');
        expect(result.png_bytes).toHaveLength(1);
        // The job is the same one GraphQL sees.
        const seen = await server.gql(JobDocument, { id: result.id });
        expect(seen.data!.job!.mode).toBe(mode.toUpperCase());
      }
    }, 120_000);
  }
});
