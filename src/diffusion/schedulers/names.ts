/** Scheduler names on their own, so that config.ts and common.ts can both use them without a cycle. */

/**
 * The schedulers implemented here (the API's names; the local engine checks they cover its list).
 * Each is a diffusers v0.30.3 class built with `Class.from_config(checkpoint scheduler config)`:
 * EULER_A EulerAncestralDiscrete, EULER EulerDiscrete, DDIM DDIM (eta 0), PNDM PNDM,
 * LMS LMSDiscrete (order 4), HEUN HeunDiscrete, DPMPP_2M / DPMPP_2M_KARRAS DPMSolverMultistep
 * (dpmsolver++, order 2, Karras sigmas off / on), UNIPC UniPCMultistep (bh2).
 */
export const SCHEDULER_NAMES = ['DPMPP_2M_KARRAS', 'EULER_A', 'EULER', 'DDIM', 'PNDM', 'LMS', 'HEUN', 'DPMPP_2M', 'UNIPC'] as const;
export type SchedulerName = (typeof SCHEDULER_NAMES)[number];

export function isSchedulerName(value: unknown): value is SchedulerName {
  return typeof value === 'string' && (SCHEDULER_NAMES as readonly string[]).includes(value);
}
