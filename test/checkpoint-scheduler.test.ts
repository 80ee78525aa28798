import { cpSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { JobStatusDocument, Text2ImageDocument } from '../src/client/generated/graphql.js';
import { collect, LOCAL_ENGINE, startTestServer, type TestServer } from './helpers/test-server.js';

/** A checkpoint may name its own default scheduler in MODELS_DIR/manifest.json; a request's choice still wins. */
describe('a checkpoint default scheduler from manifest.json', () => {
  const models = mkdtempSync(path.join(tmpdir(), 'sd-models-'));
  let server: TestServer;

  beforeAll(async () => {
    for (const name of ['ddim-default', 'plain']) {
      cpSync(path.join(import.meta.dirname, 'fixtures/parity/models/sd-script'), path.join(models, name), { recursive: true });
    }
    writeFileSync(
      path.join(models, 'manifest.json'),
      JSON.stringify({ defaultCheckpoint: 'plain', checkpoints: { 'ddim-default': { scheduler: 'DDIM' } } }),
    );
    server = await startTestServer({ env: { ...LOCAL_ENGINE, MODELS_DIR: models, RATE_LIMIT_JOBS_BURST: '100' } });
  }, 60_000);
  afterAll(async () => {
    await server.stop();
    rmSync(models, { recursive: true, force: true });
  });

  const image = async (modelId: string, scheduler?: 'DDIM' | 'EULER_A' | 'DPMPP_2M_KARRAS') => {
    const created = await server.gql(Text2ImageDocument, {
      input: {
        modelId,
        prompt: 'a red fox',
        width: 64,
        height: 64,
        numInferenceSteps: 5,
        seed: 9,
        safetyChecker: false,
        ...(scheduler ? { scheduler } : {}),
      },
    });
    expect(created.errors).toBeUndefined();
    const { values } = await collect(server.ws(), JobStatusDocument, { id: created.data!.text2image.id }, 30_000);
    const done = values.at(-1)!.jobStatus;
    expect(done.status).toBe('SUCCESS');
    return Buffer.from(await (await fetch(done.downloadUrls[0]!)).arrayBuffer());
  };

  it('uses it when the request names none, and the request when it does', async () => {
    const byDefault = await image('ddim-default');
    expect(byDefault.equals(await image('ddim-default', 'DDIM'))).toBe(true);
    expect(byDefault.equals(await image('ddim-default', 'EULER_A'))).toBe(false);
    // The same weights without a manifest scheduler: LOCAL_SCHEDULER's default, DPMPP_2M_KARRAS.
    const plain = await image('plain');
    expect(plain.equals(await image('plain', 'DPMPP_2M_KARRAS'))).toBe(true);
    expect(plain.equals(byDefault)).toBe(false);
  });
});
