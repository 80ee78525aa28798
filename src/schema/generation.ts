import type { InputFieldBuilder } from '@pothos/core';
import { DEFAULT_MASK_BLUR, InputValidationError, MAX_MASK_BLUR, MAX_SEED, type FieldIssue } from '../generation/input.js';
import { sniffImageType } from '../images/sniff.js';
import type { JobMode } from '../generation/request.js';
import { builder, type BuilderTypes } from './builder.js';
import { authorized, type GraphQLContext } from './context.js';
import { JobType } from './job.js';
import { Scheduler } from './scheduler.js';

/*
 * The three generation mutations. Every input field is nullable in the SDL on purpose: required
 * fields and ranges are checked by the mode's zod schema, so that every refusal comes back the
 * same way, as BAD_USER_INPUT with a field path and a code (see the error's extensions.issues).
 */

type Fields = InputFieldBuilder<BuilderTypes, 'InputObject'>;

const commonFields = (t: Fields) => ({
  modelId: t.id({
    defaultValue: 'sd1.5',
    description: 'A base checkpoint id or alias from Query.models; "sd1.5" is the default checkpoint.',
  }),
  prompt: t.string({ description: 'Required, non-empty; at most 75 CLIP tokens. Write embedding trigger words here.' }),
  negativePrompt: t.string({ description: 'What to steer away from; may hold negative-embedding trigger words.' }),
  numInferenceSteps: t.int({ defaultValue: 30, description: 'Denoising steps, 1 to 100 (20-30 is typical).' }),
  guidanceScale: t.float({ defaultValue: 7.5, description: 'Classifier-free guidance, 1 to 20 (7.5-12.5 is typical).' }),
  samples: t.int({ defaultValue: 1, description: 'Images to generate, 1 to 4.' }),
  width: t.int({ defaultValue: 512, description: 'Width in pixels: a multiple of 8 from 64 to 1024 (512 or less suits SD 1.5).' }),
  height: t.int({ defaultValue: 512, description: 'Height in pixels: a multiple of 8 from 64 to 1024.' }),
  seed: t.int({
    description: `0 to ${MAX_SEED}; the same seed and inputs give the same images. Absent or -1: a random seed, reported in Job.seed.`,
  }),
  embeddings: t.idList({ description: 'Ids of textual-inversion embeddings from Query.models (one id or a list).' }),
  safetyChecker: t.boolean({ defaultValue: true, description: 'Check outputs for NSFW content and black out flagged ones.' }),
  scheduler: t.field({
    type: Scheduler,
    description:
      "The denoising scheduler; absent: the engine's default (the local engine's is LOCAL_SCHEDULER, DPMPP_2M_KARRAS unless configured). Any choice keeps the checkpoint's betas: its scheduler_config.json is read as diffusers' from_config reads it.",
  }),
  refiner: t.boolean({
    defaultValue: false,
    description: 'Accepted for compatibility only: SD 1.5 has no refiner stage, so true is refused (NOT_SUPPORTED).',
  }),
  webhookUrl: t.string({
    description:
      "An http(s) URL to POST the job's end to (SUCCESS, FAILURE or CANCELED), signed with HMAC-SHA256 by the API key's webhook secret (Query.webhookSecret) in X-Webhook-Signature, with a stable X-Webhook-Id per delivery; retried with back-off. Private addresses are refused unless the operator allows them.",
  }),
  idempotencyKey: t.string({
    description:
      'Makes retries safe: a request repeating an earlier one with the same key (per API key) returns the job the first made instead of a second job; the same key with a different request is refused (IDEMPOTENCY_KEY_REUSED). 1 to 255 visible ASCII characters. Over HTTP the Idempotency-Key header does the same.',
  }),
});

const strengthField = (t: Fields) =>
  t.float({ defaultValue: 0.8, description: 'Denoise strength, 0 to 1: 0 keeps the init image, 1 ignores it.' });
const initImageField = (t: Fields) =>
  t.string({ description: 'Required (or initImageFile): the init image, as an http(s) URL or a data: URL (base64).' });
const initImageFileField = (t: Fields) =>
  t.field({
    type: 'File',
    description: 'The init image uploaded as a file (GraphQL multipart request: PNG, JPEG or WebP), instead of initImage.',
  });

const Text2ImageInput = builder.inputType('Text2ImageInput', {
  description: 'A text2image request.',
  fields: (t) => commonFields(t),
});

const Image2ImageInput = builder.inputType('Image2ImageInput', {
  description: 'An image2image request: the init image is redrawn, guided by the prompt.',
  fields: (t) => ({ ...commonFields(t), initImage: initImageField(t), initImageFile: initImageFileField(t), strength: strengthField(t) }),
});

const InpaintingInput = builder.inputType('InpaintingInput', {
  description: 'An inpainting request: only the masked part of the init image is redrawn.',
  fields: (t) => ({
    ...commonFields(t),
    initImage: initImageField(t),
    initImageFile: initImageFileField(t),
    maskImage: t.string({
      description:
        'Required (or maskImageFile): the mask, same size as the init image; white is repainted, black is kept. An http(s) or data: URL.',
    }),
    maskImageFile: t.field({
      type: 'File',
      description: 'The mask uploaded as a file (GraphQL multipart request: PNG, JPEG or WebP), instead of maskImage.',
    }),
    strength: strengthField(t),
    maskBlur: t.int({
      defaultValue: DEFAULT_MASK_BLUR,
      description: `How soft the edge is where the repainted part meets the kept init image, when keepUnmasked is true: the standard deviation in pixels of the Gaussian blur of the mask that the result is blended over the init image with (what PIL's GaussianBlur(radius) means). An integer from 0 to ${MAX_MASK_BLUR}; default ${DEFAULT_MASK_BLUR}; 0 is a hard edge (the mask as it is). Pixels farther than 3 x maskBlur from the mask are the init image's exactly. Ignored when keepUnmasked is false. The imagepipeline engine passes a value other than the default on to its upstream (a worker running this server honours it; the hosted service is not known to).`,
    }),
    keepUnmasked: t.boolean({
      defaultValue: true,
      description:
        "Whether the unmasked part of the result is the init image's own pixels (default true): the generated image is blended over the init image through the mask blurred by maskBlur, so what was not to be repainted comes back unchanged instead of through the VAE. false gives diffusers' output unchanged (the whole image as decoded, maskBlur ignored). The imagepipeline engine passes false on to its upstream (a worker running this server honours it; the hosted service is not known to).",
    }),
  }),
});

type ImageFields = { initImage?: string | null; initImageFile?: File | null; maskImage?: string | null; maskImageFile?: File | null };

/**
 * Uploaded images become data: URLs, so that they take the same path as any other (the same
 * checks of size and format, stored with the job, fetched by any engine).
 */
async function withUploadedImages<T extends ImageFields>(input: T): Promise<Omit<T, 'initImageFile' | 'maskImageFile'>> {
  const { initImageFile, maskImageFile, ...rest } = input;
  const issues: FieldIssue[] = [];
  const inline = async (field: 'initImage' | 'maskImage', file: File | null | undefined) => {
    if (!file) return;
    if (rest[field]) {
      issues.push({ path: ['input', `${field}File`], code: 'INVALID_VALUE', message: `send ${field} or ${field}File, not both` });
      return;
    }
    const bytes = Buffer.from(await file.arrayBuffer());
    const type = sniffImageType(bytes);
    if (!type) {
      issues.push({ path: ['input', `${field}File`], code: 'INVALID_VALUE', message: 'is not a PNG, JPEG or WebP image' });
      return;
    }
    (rest as ImageFields)[field] = `data:${type};base64,${bytes.toString('base64')}`;
  };
  await inline('initImage', initImageFile);
  await inline('maskImage', maskImageFile);
  if (issues.length > 0) throw new InputValidationError(issues);
  return rest;
}

/** Creates the job; refusals carry paths from the mutation's arguments (input.width, ...). */
async function createJob(ctx: GraphQLContext, mode: JobMode, input: { idempotencyKey?: string | null } & ImageFields) {
  const principal = authorized(ctx, 'jobs.create');
  const { idempotencyKey: fromInput, ...request } = await withUploadedImages(input);
  if (fromInput && ctx.idempotencyKey && fromInput !== ctx.idempotencyKey) {
    throw new InputValidationError([
      {
        path: ['input', 'idempotencyKey'],
        code: 'INVALID_VALUE',
        message: 'differs from the Idempotency-Key header; send one or the other',
      },
    ]);
  }
  try {
    return await ctx.jobs.create(principal, mode, request, { idempotencyKey: fromInput ?? ctx.idempotencyKey });
  } catch (err) {
    if (err instanceof InputValidationError) {
      throw new InputValidationError(err.issues.map((i) => ({ ...i, path: ['input', ...i.path] })));
    }
    throw err;
  }
}

builder.mutationFields((t) => ({
  text2image: t.field({
    type: JobType,
    description: 'Generates images from a prompt. Returns the new job at once (PENDING); follow it with jobStatus.',
    args: { input: t.arg({ type: Text2ImageInput, required: true, description: 'The request.' }) },
    resolve: (_, { input }, ctx) => createJob(ctx, 'text2image', input),
  }),
  image2image: t.field({
    type: JobType,
    description: 'Redraws an init image guided by the prompt. Returns the new job at once (PENDING).',
    args: { input: t.arg({ type: Image2ImageInput, required: true, description: 'The request.' }) },
    resolve: (_, { input }, ctx) => createJob(ctx, 'image2image', input),
  }),
  inpainting: t.field({
    type: JobType,
    description: 'Redraws the masked part of an init image. Returns the new job at once (PENDING).',
    args: { input: t.arg({ type: InpaintingInput, required: true, description: 'The request.' }) },
    resolve: (_, { input }, ctx) => createJob(ctx, 'inpainting', input),
  }),
}));
