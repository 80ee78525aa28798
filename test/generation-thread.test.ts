import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import pino from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { GenerationThread } from '../src/engines/local/generation-thread.js';
import { generateTinyPipeline } from '../scripts/tiny-models/generate.js';
import type { GenerateMessage } from '../src/engines/local/thread-protocol.js';

/** The generation thread's own state across jobs: checkpoints it keeps loaded. */
describe('generation thread', () => {
  const root = mkdtempSync(path.join(tmpdir(), 'sd-worker-'));
  let worker: GenerationThread;
  let jobs = 0;
  const job = (over: Partial<GenerateMessage> = {}): GenerateMessage => ({
    type: 'generate',
    jobId: `job-${++jobs}`,
    checkpointDir: path.join(root, 'tiny'),
    prompt: 'a lighthouse',
    negativePrompt: '',
    steps: 40,
    guidanceScale: 7.5,
    samples: 2,
    width: 256,
    height: 256,
    seed: 3,
    scheduler: 'EULER',
    embeddings: [],
    safetyChecker: false,
    ...over,
  });

  beforeAll(async () => {
    await generateTinyPipeline(path.join(root, 'tiny'));
    await generateTinyPipeline(path.join(root, 'tiny-inpainting'), { inpainting: true });
    worker = new GenerationThread({ maxLoadedCheckpoints: 1, executionProvider: 'cpu', intraOpThreads: 0 }, pino({ level: 'silent' }));
  }, 60_000);
  afterAll(async () => {
    await worker.close();
    rmSync(root, { recursive: true, force: true });
  });

  it('keeps a running job’s checkpoint loaded when another is loaded meanwhile (an upload’s check), and releases it after', async () => {
    const alone = await worker.generate(job(), () => {});
    const seen: { described?: Promise<unknown> } = {};
    // With one checkpoint kept loaded, describing the other evicts the one the job is running on.
    const during = await worker.generate(job(), (step) => {
      if (step === 2) seen.described = worker.describe(path.join(root, 'tiny-inpainting'));
    });
    expect(await seen.described).toEqual({ hiddenSize: 32, inpainting: true });
    expect(during.map((image, i) => image.data.equals(alone[i]!.data))).toEqual([true, true]);
    // The evicted checkpoint was released after the job, and loads again when asked.
    expect((await worker.generate(job({ steps: 4 }), () => {})).length).toBe(2);
  }, 60_000);
});
