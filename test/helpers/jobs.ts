import type { GenerationParams } from '../../src/generation/request.js';
import type { Job } from '../../src/jobs/job.js';

/** Valid text2image parameters, as validation would leave them; override what a test is about. */
export const testParams = (over: Partial<GenerationParams> = {}): GenerationParams => ({
  modelId: 'sd1.5',
  prompt: 'p',
  negativePrompt: '',
  numInferenceSteps: 10,
  guidanceScale: 7.5,
  samples: 1,
  width: 512,
  height: 512,
  seed: 1,
  embeddings: [],
  safetyChecker: true,
  ...over,
});

/** A PENDING text2image job record, not yet submitted; override what a test is about. */
export const testJob = (over: Partial<Job> = {}): Job => ({
  id: 'j1',
  ownerId: 'owner',
  mode: 'text2image',
  status: 'PENDING',
  params: testParams(),
  engine: 'test',
  engineHandle: null,
  progress: null,
  engineQueuePosition: null,
  requeues: 0,
  webhookUrl: null,
  images: [],
  error: null,
  version: 1,
  createdAt: new Date(0),
  startedAt: null,
  finishedAt: null,
  ...over,
});
