import { z } from 'zod';
import { SCHEDULER_NAMES, type GenerationParams, type JobMode } from './request.js';

/**
 * One zod schema per generation mode: the single definition of what a request may hold.
 * GraphQL resolvers (and the REST routes, after mapping snake_case) parse with these, so the
 * two surfaces can never disagree. Pure: no I/O; catalogue checks live in checkCatalogue().
 */

/** Largest seed: GraphQL's Int is a signed 32-bit integer, so seeds stay within it everywhere. */
export const MAX_SEED = 2_147_483_647;
export const DEFAULT_MODEL_ALIAS = 'sd1.5';
export const MAX_EMBEDDINGS = 16;
/** Prompts are checked exactly against CLIP's 75-token limit by engines that tokenize; this is a cheap outer bound. */
export const MAX_PROMPT_CHARS = 2_000;
/** Inpainting's maskBlur: the blend edge's Gaussian sigma in whole pixels. */
export const DEFAULT_MASK_BLUR = 4;
export const MAX_MASK_BLUR = 64;

const intInRange = (min: number, max: number) =>
  z
    .number({ error: (i) => (i.input === undefined ? 'is required' : 'must be an integer') })
    .int({ error: 'must be an integer' })
    .min(min, { error: `must be between ${min} and ${max}` })
    .max(max, { error: `must be between ${min} and ${max}` });

const floatInRange = (min: number, max: number) =>
  z
    .number({ error: 'must be a number' })
    .min(min, { error: `must be between ${min} and ${max}` })
    .max(max, { error: `must be between ${min} and ${max}` });

const dimension = intInRange(64, 1024).multipleOf(8, { error: 'must be a multiple of 8 between 64 and 1024' });

const imageUrl = z
  .string({ error: 'is required' })
  .trim()
  .min(1, { error: 'is required' })
  .max(16 * 1024 * 1024, { error: 'is too long' })
  .refine(isImageUrl, { error: 'must be an http(s) URL or a data: URL of an image' });

function isImageUrl(value: string): boolean {
  if (value.startsWith('data:')) return /^data:image\/[a-z0-9.+-]+;base64,/i.test(value);
  try {
    const url = new URL(value);
    return url.protocol === 'http:' || url.protocol === 'https:';
  } catch {
    return false;
  }
}

const prompt = (required: boolean) =>
  z
    .string({ error: (i) => (i.input === undefined ? 'is required' : 'must be a string') })
    .trim()
    .max(MAX_PROMPT_CHARS, { error: `must be at most ${MAX_PROMPT_CHARS} characters` })
    .refine((s) => !required || s.length > 0, { error: 'must not be empty' });

/** Model and embedding ids are short; a longer one is refused before it is echoed in messages. */
const MAX_ID_CHARS = 200;

const commonShape = {
  modelId: z
    .string()
    .trim()
    .min(1, { error: 'must not be empty' })
    .max(MAX_ID_CHARS, { error: `must be at most ${MAX_ID_CHARS} characters` })
    .default(DEFAULT_MODEL_ALIAS),
  prompt: prompt(true),
  negativePrompt: prompt(false)
    .nullish()
    .transform((v) => v ?? ''),
  numInferenceSteps: intInRange(1, 100).default(30),
  guidanceScale: floatInRange(1, 20).default(7.5),
  samples: intInRange(1, 4).default(1),
  width: dimension.default(512),
  height: dimension.default(512),
  seed: intInRange(-1, MAX_SEED).nullish(),
  embeddings: z
    .union([z.string(), z.array(z.string())], { error: 'must be an id or a list of ids' })
    .nullish()
    .transform((v) => (v == null ? [] : Array.isArray(v) ? v : [v]))
    .pipe(
      z
        .array(
          z
            .string()
            .trim()
            .min(1, { error: 'must not be empty' })
            .max(MAX_ID_CHARS, { error: `must be at most ${MAX_ID_CHARS} characters` }),
        )
        .max(MAX_EMBEDDINGS, { error: `must name at most ${MAX_EMBEDDINGS} embeddings` }),
    ),
  safetyChecker: z
    .boolean({ error: 'must be a boolean' })
    .nullish()
    .transform((v) => v ?? true),
  scheduler: z.enum(SCHEDULER_NAMES, { error: `must be one of ${SCHEDULER_NAMES.join(', ')}` }).optional(),
  webhookUrl: z
    .string({ error: 'must be a string' })
    .max(2048, { error: 'must be at most 2048 characters' })
    .refine((u) => /^https?:\/\//i.test(u) && URL.canParse(u), { error: 'must be an http(s) URL' })
    .nullish(),
  refiner: z
    .boolean({ error: 'must be a boolean' })
    .nullish()
    .refine((v) => v !== true, {
      error: 'SD 1.5 has no refiner stage: omit refiner or set it to false',
      params: { code: 'NOT_SUPPORTED' },
    }),
};

const strength = floatInRange(0, 1)
  .nullish()
  .transform((v) => v ?? 0.8);

const maskBlur = intInRange(0, MAX_MASK_BLUR)
  .nullish()
  .transform((v) => v ?? DEFAULT_MASK_BLUR);
const keepUnmasked = z
  .boolean({ error: 'must be a boolean' })
  .nullish()
  .transform((v) => v ?? true);

export const generationInputSchemas = {
  text2image: z.object(commonShape),
  image2image: z.object({ ...commonShape, initImage: imageUrl, strength }),
  inpainting: z.object({ ...commonShape, initImage: imageUrl, maskImage: imageUrl, strength, maskBlur, keepUnmasked }),
} satisfies Record<JobMode, z.ZodType>;

/** A refused field: where it is (path from the input object), a stable code, and why. */
export interface FieldIssue {
  path: (string | number)[];
  code: string;
  message: string;
}

export class InputValidationError extends Error {
  constructor(readonly issues: FieldIssue[]) {
    super(issues.map((i) => `${i.path.join('.')}: ${i.message}`).join('; '));
    this.name = 'InputValidationError';
  }
}

/** Maps zod's issue codes to the stable codes this API documents. */
function issueCode(issue: z.core.$ZodIssue): string {
  const custom = (issue as { params?: { code?: string } }).params?.code;
  if (custom) return custom;
  switch (issue.code) {
    case 'too_small':
    case 'too_big':
      return issue.origin === 'string' || issue.origin === 'array' ? 'INVALID_LENGTH' : 'OUT_OF_RANGE';
    case 'not_multiple_of':
      return 'NOT_MULTIPLE_OF_8';
    case 'invalid_type':
      return issue.input === undefined ? 'REQUIRED' : 'INVALID_TYPE';
    default:
      return 'INVALID_VALUE';
  }
}

/**
 * Validates raw input for one mode; resolves seed -1/absent to a fresh random seed. The webhook
 * URL is returned apart: it says where to report, not what to generate.
 */
export function parseGenerationInput(
  mode: JobMode,
  input: unknown,
  randomSeed: () => number,
): { params: GenerationParams; webhookUrl: string | null } {
  const result = generationInputSchemas[mode].safeParse(withoutNulls(input), { reportInput: true });
  if (!result.success) {
    throw new InputValidationError(
      result.error.issues.map((issue) => ({
        path: issue.path.map((p) => (typeof p === 'symbol' ? String(p) : p)),
        code: issueCode(issue),
        message: issue.message,
      })),
    );
  }
  const { refiner: _refiner, seed, webhookUrl, ...rest } = result.data as z.output<typeof generationInputSchemas.inpainting>;
  return { params: { ...rest, seed: seed == null || seed === -1 ? randomSeed() : seed }, webhookUrl: webhookUrl ?? null };
}

/** Explicit nulls (GraphQL variables, JSON bodies) mean "not given", so defaults apply. */
function withoutNulls(input: unknown): unknown {
  if (!input || typeof input !== 'object' || Array.isArray(input)) return input;
  return Object.fromEntries(Object.entries(input).filter(([, v]) => v !== null));
}
