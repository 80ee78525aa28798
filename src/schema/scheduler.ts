import { SCHEDULER_NAMES } from '../generation/request.js';
import { builder } from './builder.js';

const SCHEDULER_DESCRIPTIONS: Record<(typeof SCHEDULER_NAMES)[number], string> = {
  EULER_A: 'Euler ancestral: varied results, good at few steps.',
  EULER: 'Euler: deterministic, smooth.',
  DDIM: 'DDIM (eta 0): deterministic, classic.',
  DPMPP_2M_KARRAS: 'DPM++ 2M with Karras sigmas (the default): sharp results at 20-30 steps.',
  PNDM: "PNDM (PLMS, skip_prk_steps): SD 1.5's own scheduler.",
  LMS: 'LMS (linear multistep, order 4).',
  HEUN: 'Heun: second order, two UNet evaluations per step.',
  DPMPP_2M: 'DPM++ 2M without Karras sigmas.',
  UNIPC: 'UniPC (bh2): good at few steps.',
};

export const Scheduler = builder.enumType('Scheduler', {
  description:
    "The denoising scheduler (sampler). A request without one gets the engine's default: the local engine's is LOCAL_SCHEDULER, DPMPP_2M_KARRAS unless configured. Whichever is chosen keeps the checkpoint's own noise schedule (its betas, training timesteps and prediction type): the checkpoint's scheduler/scheduler_config.json is read as diffusers' from_config reads it, so keys the file lacks take the chosen scheduler's own defaults.",
  values: Object.fromEntries(SCHEDULER_NAMES.map((n) => [n, { value: n, description: SCHEDULER_DESCRIPTIONS[n] }])) as {
    [K in (typeof SCHEDULER_NAMES)[number]]: { value: K; description: string };
  },
});
