import sharp from 'sharp';
import type { Scheduler } from '../../src/client/generated/graphql.js';
import { soakSizesFromEnv } from './options.js';

/** Random job inputs: small and cheap on the tiny models, valid, or broken in one known way. */

export type Mode = 'text2image' | 'image2image' | 'inpainting';

export interface ImagePair {
  init: string;
  mask: string;
}

export const rand = (lo: number, hi: number) => lo + Math.random() * (hi - lo);
export const randInt = (lo: number, hi: number) => Math.floor(rand(lo, hi + 1));
export const pick = <T>(xs: readonly T[]): T => xs[Math.floor(Math.random() * xs.length)]!;
export const chance = (p: number) => Math.random() < p;

const EMBEDDING_ID = 'f84133b4-aad8-44be-b9ce-7e7e3a8c111f'; // the tiny models answer to the contract's ids
const SCHEDULERS = ['EULER_A', 'EULER', 'DDIM', 'DPMPP_2M_KARRAS'] as Scheduler[];
export const PROMPTS = [
  'a lighthouse on a cliff at dusk, oil painting',
  'a cottage in the woods, watercolor',
  'portrait of an old fisherman, photorealistic',
  'a red bicycle leaning on a wall',
  'mountains above the clouds, sunrise',
];

/** Image sides: multiples of 8 from 64 to 256, or BENCH_SOAK_SIZES. */
const SIZES = soakSizesFromEnv();
const size = () => (SIZES.length ? pick(SIZES) : 64 + 8 * randInt(0, 24));

/** Small init images (a gradient with noise) and masks (a white rectangle on black), as data: URLs. */
export async function makeImages(): Promise<ImagePair[]> {
  const pairs: ImagePair[] = [];
  for (const [w, h] of [
    [64, 64],
    [96, 128],
    [128, 96],
    [128, 128],
  ] as const) {
    const rgb = Buffer.alloc(w * h * 3);
    for (let y = 0; y < h; y++)
      for (let x = 0; x < w; x++) {
        const o = (y * w + x) * 3;
        rgb[o] = (x * 255) / w + rand(-20, 20);
        rgb[o + 1] = (y * 255) / h + rand(-20, 20);
        rgb[o + 2] = 128 + rand(-40, 40);
      }
    const init = await sharp(rgb, { raw: { width: w, height: h, channels: 3 } })
      .png()
      .toBuffer();
    const grey = Buffer.alloc(w * h);
    for (let y = h / 4; y < (3 * h) / 4; y++) for (let x = w / 4; x < (3 * w) / 4; x++) grey[y * w + x] = 255;
    const mask = await sharp(grey, { raw: { width: w, height: h, channels: 1 } })
      .png()
      .toBuffer();
    pairs.push({ init: `data:image/png;base64,${init.toString('base64')}`, mask: `data:image/png;base64,${mask.toString('base64')}` });
  }
  return pairs;
}

/** A valid input for the mode (camelCase, as GraphQL takes it). */
export function validInput(mode: Mode, images: ImagePair[]): Record<string, unknown> {
  const embed = chance(0.1);
  const input: Record<string, unknown> = {
    modelId: 'sd1.5',
    prompt: pick(PROMPTS),
    negativePrompt: embed ? 'UnrealisticDream, blurry' : 'blurry, low quality',
    numInferenceSteps: randInt(2, 10),
    guidanceScale: Math.round(rand(1, 12) * 10) / 10,
    samples: chance(0.2) ? 2 : 1,
    width: size(),
    height: size(),
    safetyChecker: chance(0.5),
  };
  if (chance(0.5)) input.seed = randInt(0, 2_147_483_647);
  if (chance(0.3)) input.scheduler = pick(SCHEDULERS);
  if (embed) input.embeddings = [EMBEDDING_ID];
  if (mode !== 'text2image') {
    const pair = pick(images);
    input.initImage = pair.init;
    input.strength = Math.round(rand(0.3, 1) * 100) / 100;
    if (mode === 'inpainting') input.maskImage = pair.mask;
  }
  return input;
}

/** Inputs the validation must refuse (BAD_USER_INPUT / HTTP 400), with what is wrong. */
export function invalidInput(images: ImagePair[]): { mode: Mode; input: Record<string, unknown>; what: string } {
  const mode = pick<Mode>(['text2image', 'image2image', 'inpainting']);
  const input = validInput(mode, images);
  const broken = pick([
    () => ((input.width = 65), 'width 65'),
    () => ((input.height = 2048), 'height 2048'),
    () => ((input.numInferenceSteps = 0), 'numInferenceSteps 0'),
    () => ((input.prompt = ''), 'empty prompt'),
    () => ((input.samples = 5), 'samples 5'),
    () => ((input.guidanceScale = 25), 'guidanceScale 25'),
    () => ((input.refiner = true), 'refiner true'),
    () => ((input.modelId = 'no-such-model'), 'unknown model'),
    () => ((input.embeddings = ['no-such-embedding']), 'unknown embedding'),
    () => ((input.seed = -7), 'seed -7'),
    ...(mode === 'text2image'
      ? []
      : [
          () => (delete input.initImage, 'no initImage'),
          () => ((input.strength = 1.5), 'strength 1.5'),
          () => ((input.initImage = 'ftp://example.com/x.png'), 'ftp initImage'),
        ]),
  ])();
  return { mode, input, what: `${mode} ${broken}` };
}

const REST_FIELDS: Record<string, string> = {
  modelId: 'model_id',
  negativePrompt: 'negative_prompt',
  numInferenceSteps: 'num_inference_steps',
  guidanceScale: 'guidance_scale',
  safetyChecker: 'safety_checker',
  initImage: 'init_image',
  maskImage: 'mask_image',
};
/** The same input in the REST contract's snake_case. */
export const toRest = (input: Record<string, unknown>) =>
  Object.fromEntries(Object.entries(input).map(([k, v]) => [REST_FIELDS[k] ?? k, v]));
