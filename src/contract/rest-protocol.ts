import { z } from 'zod';
import { DEFAULT_MASK_BLUR } from '../generation/input.js';
import type { GenerationParams, JobMode } from '../generation/request.js';

/**
 * The wire format of the contract's REST protocol (docs/api-contract.md): snake_case request
 * bodies and the SUCCESS / PENDING / FAILURE replies. The imagepipeline engine speaks it as a
 * client; the REST routes of this server will speak it as a server.
 *
 * Replies may carry extra fields beyond the contract. The ones understood here, all optional,
 * are what this server itself adds when it acts as a worker:
 *   state: "QUEUED" | "PROCESSING", step, total_steps, progress (0..1), queue_position, seed,
 *   nsfw (one boolean per sample, on SUCCESS), preview (a data: URL of the job as it forms, on
 *   PENDING, when the status request asked with ?preview=1).
 */

export const restPaths = {
  submit: (mode: JobMode) => `/sd/${mode}/v1`,
  status: (mode: JobMode, id: string, preview = false) => `/sd/${mode}/v1/status/${encodeURIComponent(id)}${preview ? '?preview=1' : ''}`,
};

export interface RestRequestBody {
  model_id: string;
  prompt: string;
  negative_prompt: string;
  num_inference_steps: number;
  guidance_scale: number;
  samples: number;
  width: number;
  height: number;
  seed: number;
  embeddings: string[];
  safety_checker: boolean;
  refiner: false;
  /** An extension of this server's; omitted unless the request chose one. */
  scheduler?: string;
  strength?: number;
  init_image?: string;
  mask_image?: string;
  /** Extensions of this server's (inpainting); omitted unless the request asked for other than the default. */
  mask_blur?: number;
  keep_unmasked?: boolean;
}

/** Maps validated parameters to the contract's request body. */
export function toRestRequestBody(mode: JobMode, params: GenerationParams): RestRequestBody {
  const body: RestRequestBody = {
    model_id: params.modelId,
    prompt: params.prompt,
    negative_prompt: params.negativePrompt,
    num_inference_steps: params.numInferenceSteps,
    guidance_scale: params.guidanceScale,
    samples: params.samples,
    width: params.width,
    height: params.height,
    seed: params.seed,
    embeddings: params.embeddings,
    safety_checker: params.safetyChecker,
    refiner: false,
  };
  if (params.scheduler) body.scheduler = params.scheduler;
  if (mode !== 'text2image') {
    body.strength = params.strength;
    body.init_image = params.initImage;
  }
  if (mode === 'inpainting') {
    body.mask_image = params.maskImage;
    // mask_blur and keep_unmasked are extensions the contract names (its "Our extensions"), not
    // fields of the hosted service. Like scheduler they go only when they change something: a
    // request at the defaults sends the hosted service the contract's body exactly, and a worker
    // (an instance of this server) applies the same defaults to a body without them. The hosted
    // service is not known to honour them; its inpainting is its own.
    if (params.maskBlur !== undefined && params.maskBlur !== DEFAULT_MASK_BLUR) body.mask_blur = params.maskBlur;
    if (params.keepUnmasked === false) body.keep_unmasked = false;
  }
  return body;
}

const nonNegativeInt = z.number().int().min(0);

/** The FAILURE reply's error: the contract says a message; some services send an object. */
const errorMessage = z
  .union([
    z.string(),
    z
      .object({ message: z.string() })
      .loose()
      .transform((e) => e.message),
  ])
  .transform((m) => m.trim() || 'the engine reported a failure without a message');

const idSchema = z.union([z.string().min(1), z.number().int()]).transform(String);

export const restReplySchema = z.discriminatedUnion('status', [
  z
    .object({
      status: z.literal('SUCCESS'),
      id: idSchema.optional(),
      download_urls: z.array(z.string().min(1)).min(1).max(4),
      nsfw: z.array(z.boolean()).optional(),
      seed: z.number().int().optional(),
    })
    .loose(),
  z
    .object({
      status: z.literal('PENDING'),
      id: idSchema,
      state: z.enum(['QUEUED', 'PROCESSING']).optional(),
      step: nonNegativeInt.optional(),
      total_steps: nonNegativeInt.optional(),
      progress: z.number().min(0).max(1).optional(),
      queue_position: nonNegativeInt.optional(),
      // An image of the job as it forms; one that is not a small image data: URL is ignored, never fatal.
      preview: z
        .string()
        .max(1_000_000)
        .regex(/^data:image\/(webp|jpeg|png);base64,[A-Za-z0-9+/=]+$/)
        .optional()
        .catch(undefined),
    })
    .loose(),
  z
    .object({
      status: z.literal('FAILURE'),
      id: idSchema.optional(),
      error: errorMessage.optional().transform((m) => m ?? 'the engine reported a failure without a message'),
      /** Ours, not the contract's: a worker running this server says whose fault it was. */
      code: z.string().max(64).optional().catch(undefined),
    })
    .loose(),
]);

export type RestReply = z.output<typeof restReplySchema>;
