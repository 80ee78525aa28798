/**
 * Scheduler configuration, read the way diffusers' `SchedulerClass.from_config(config)` reads a
 * checkpoint's `scheduler/scheduler_config.json`: every key the JSON gives is kept (whatever
 * class wrote the file: SD 1.5's is a PNDMScheduler config), and every key it lacks takes the
 * TARGET class's own `__init__` default (diffusers v0.30.3). So SD 1.5's JSON, which has no
 * `timestep_spacing`, gives DDIM and PNDM "leading" spacing but Euler, Euler a, LMS, Heun,
 * DPM-Solver++ and UniPC "linspace".
 *
 * The checkpoint's noise schedule (num_train_timesteps, beta_start, beta_end, beta_schedule,
 * trained_betas, prediction_type) therefore follows the JSON whatever scheduler a request picks.
 * Some scheduler names fix a few keys whatever the JSON says (DPMPP_2M_KARRAS: Karras sigmas on,
 * DPMPP_2M: off, both dpmsolver++ of order 2). Unknown keys are accepted and ignored.
 */
import { z } from 'zod';
import type { SchedulerName } from './names.js';

export const BETA_SCHEDULES = ['scaled_linear', 'linear', 'squaredcos_cap_v2'] as const;
export const TIMESTEP_SPACINGS = ['leading', 'trailing', 'linspace'] as const;
export const PREDICTION_TYPES = ['epsilon', 'v_prediction'] as const;
export type PredictionType = (typeof PREDICTION_TYPES)[number];

/** The diffusers class behind each scheduler name. */
export const SCHEDULER_CLASSES = {
  EULER_A: 'EulerAncestralDiscreteScheduler',
  EULER: 'EulerDiscreteScheduler',
  DDIM: 'DDIMScheduler',
  DPMPP_2M_KARRAS: 'DPMSolverMultistepScheduler',
  DPMPP_2M: 'DPMSolverMultistepScheduler',
  PNDM: 'PNDMScheduler',
  LMS: 'LMSDiscreteScheduler',
  HEUN: 'HeunDiscreteScheduler',
  UNIPC: 'UniPCMultistepScheduler',
} as const satisfies Record<SchedulerName, string>;
export type SchedulerClassName = (typeof SCHEDULER_CLASSES)[SchedulerName];

/** SD 1.5's scheduler_config.json (runwayml/stable-diffusion-v1-5): what createScheduler uses when given no config. */
export const SD15_SCHEDULER_CONFIG = Object.freeze({
  _class_name: 'PNDMScheduler',
  _diffusers_version: '0.6.0',
  beta_end: 0.012,
  beta_schedule: 'scaled_linear',
  beta_start: 0.00085,
  clip_sample: false,
  num_train_timesteps: 1000,
  set_alpha_to_one: false,
  skip_prk_steps: true,
  steps_offset: 1,
  trained_betas: null,
});

/** Every key any of the classes reads; all optional (the class default fills what is missing). */
const fieldsSchema = z
  .object({
    num_train_timesteps: z.number().int().min(2).max(100_000),
    beta_start: z.number().positive().lt(1),
    beta_end: z.number().positive().lt(1),
    beta_schedule: z.enum(BETA_SCHEDULES),
    trained_betas: z.array(z.number().gt(0).lt(1)).nullable(),
    prediction_type: z.enum(PREDICTION_TYPES),
    timestep_spacing: z.enum(TIMESTEP_SPACINGS),
    steps_offset: z.number().int().min(0),
    rescale_betas_zero_snr: z.boolean(),
    // DDIM / PNDM
    set_alpha_to_one: z.boolean(),
    clip_sample: z.boolean(),
    clip_sample_range: z.number().positive(),
    skip_prk_steps: z.boolean(),
    thresholding: z.boolean(),
    dynamic_thresholding_ratio: z.number(),
    sample_max_value: z.number(),
    // k-diffusion style (Euler, LMS, Heun) and the multistep solvers
    use_karras_sigmas: z.boolean().nullable(),
    sigma_min: z.number().positive().nullable(),
    sigma_max: z.number().positive().nullable(),
    interpolation_type: z.enum(['linear', 'log_linear']),
    timestep_type: z.enum(['discrete', 'continuous']),
    final_sigmas_type: z.enum(['zero', 'sigma_min']).nullable(),
    // DPMSolverMultistep / UniPCMultistep
    solver_order: z.number().int().min(1).max(3),
    algorithm_type: z.enum(['dpmsolver++', 'dpmsolver', 'sde-dpmsolver++', 'sde-dpmsolver']),
    solver_type: z.enum(['midpoint', 'heun', 'bh1', 'bh2']),
    lower_order_final: z.boolean(),
    euler_at_final: z.boolean(),
    use_lu_lambdas: z.boolean().nullable(),
    lambda_min_clipped: z.number(),
    variance_type: z.string().nullable(),
    predict_x0: z.boolean(),
    disable_corrector: z.array(z.number().int()),
    solver_p: z.null(),
  })
  .partial()
  .loose();

type FieldName = Exclude<keyof SchedulerConfig, 'className'>;

/** A scheduler configuration resolved for one diffusers class (every field filled in). */
export interface SchedulerConfig {
  /** The diffusers class these values were resolved for. */
  readonly className: SchedulerClassName;
  num_train_timesteps: number;
  beta_start: number;
  beta_end: number;
  beta_schedule: (typeof BETA_SCHEDULES)[number];
  trained_betas: number[] | null;
  prediction_type: PredictionType;
  timestep_spacing: (typeof TIMESTEP_SPACINGS)[number];
  steps_offset: number;
  rescale_betas_zero_snr: boolean;
  set_alpha_to_one: boolean;
  clip_sample: boolean;
  clip_sample_range: number;
  skip_prk_steps: boolean;
  thresholding: boolean;
  use_karras_sigmas: boolean;
  sigma_min: number | null;
  sigma_max: number | null;
  interpolation_type: 'linear' | 'log_linear';
  timestep_type: 'discrete' | 'continuous';
  final_sigmas_type: 'zero' | 'sigma_min';
  solver_order: number;
  algorithm_type: 'dpmsolver++' | 'dpmsolver' | 'sde-dpmsolver++' | 'sde-dpmsolver';
  solver_type: 'midpoint' | 'heun' | 'bh1' | 'bh2';
  lower_order_final: boolean;
  euler_at_final: boolean;
  use_lu_lambdas: boolean;
  lambda_min_clipped: number;
  variance_type: string | null;
  predict_x0: boolean;
  disable_corrector: number[];
}

const BASE = {
  num_train_timesteps: 1000,
  beta_start: 0.0001,
  beta_end: 0.02,
  beta_schedule: 'linear',
  trained_betas: null,
  prediction_type: 'epsilon',
} as const;

/**
 * The `__init__` defaults of each class in diffusers v0.30.3 (only the keys the class takes:
 * a JSON key the class does not take is ignored, as from_config ignores it).
 */
const CLASS_DEFAULTS: Record<SchedulerClassName, Readonly<Record<string, unknown>>> = {
  EulerDiscreteScheduler: {
    ...BASE,
    interpolation_type: 'linear',
    use_karras_sigmas: false,
    sigma_min: null,
    sigma_max: null,
    timestep_spacing: 'linspace',
    timestep_type: 'discrete',
    steps_offset: 0,
    rescale_betas_zero_snr: false,
    final_sigmas_type: 'zero',
  },
  EulerAncestralDiscreteScheduler: { ...BASE, timestep_spacing: 'linspace', steps_offset: 0, rescale_betas_zero_snr: false },
  DDIMScheduler: {
    ...BASE,
    clip_sample: true,
    set_alpha_to_one: true,
    steps_offset: 0,
    thresholding: false,
    dynamic_thresholding_ratio: 0.995,
    clip_sample_range: 1.0,
    sample_max_value: 1.0,
    timestep_spacing: 'leading',
    rescale_betas_zero_snr: false,
  },
  PNDMScheduler: { ...BASE, skip_prk_steps: false, set_alpha_to_one: false, timestep_spacing: 'leading', steps_offset: 0 },
  LMSDiscreteScheduler: { ...BASE, use_karras_sigmas: false, timestep_spacing: 'linspace', steps_offset: 0 },
  HeunDiscreteScheduler: {
    ...BASE,
    beta_start: 0.00085,
    beta_end: 0.012,
    use_karras_sigmas: false,
    clip_sample: false,
    clip_sample_range: 1.0,
    timestep_spacing: 'linspace',
    steps_offset: 0,
  },
  DPMSolverMultistepScheduler: {
    ...BASE,
    solver_order: 2,
    thresholding: false,
    dynamic_thresholding_ratio: 0.995,
    sample_max_value: 1.0,
    algorithm_type: 'dpmsolver++',
    solver_type: 'midpoint',
    lower_order_final: true,
    euler_at_final: false,
    use_karras_sigmas: false,
    use_lu_lambdas: false,
    final_sigmas_type: 'zero',
    lambda_min_clipped: -Infinity,
    variance_type: null,
    timestep_spacing: 'linspace',
    steps_offset: 0,
    rescale_betas_zero_snr: false,
  },
  UniPCMultistepScheduler: {
    ...BASE,
    solver_order: 2,
    thresholding: false,
    dynamic_thresholding_ratio: 0.995,
    sample_max_value: 1.0,
    predict_x0: true,
    solver_type: 'bh2',
    lower_order_final: true,
    disable_corrector: [],
    solver_p: null,
    use_karras_sigmas: false,
    timestep_spacing: 'linspace',
    steps_offset: 0,
    final_sigmas_type: 'zero',
    rescale_betas_zero_snr: false,
  },
};

/** What a scheduler name fixes whatever the JSON says. */
const NAME_OVERRIDES: Partial<Record<SchedulerName, Partial<Record<FieldName, unknown>>>> = {
  DPMPP_2M_KARRAS: { use_karras_sigmas: true, algorithm_type: 'dpmsolver++', solver_order: 2 },
  DPMPP_2M: { use_karras_sigmas: false, algorithm_type: 'dpmsolver++', solver_order: 2 },
};

/** Values for the keys a class does not take (never read by that class's code). */
const UNUSED: Omit<SchedulerConfig, 'className'> = {
  ...BASE,
  trained_betas: null,
  timestep_spacing: 'leading',
  steps_offset: 0,
  rescale_betas_zero_snr: false,
  set_alpha_to_one: false,
  clip_sample: false,
  clip_sample_range: 1.0,
  skip_prk_steps: true,
  thresholding: false,
  use_karras_sigmas: false,
  sigma_min: null,
  sigma_max: null,
  interpolation_type: 'linear',
  timestep_type: 'discrete',
  final_sigmas_type: 'zero',
  solver_order: 1,
  algorithm_type: 'dpmsolver++',
  solver_type: 'midpoint',
  lower_order_final: true,
  euler_at_final: false,
  use_lu_lambdas: false,
  lambda_min_clipped: -Infinity,
  variance_type: null,
  predict_x0: true,
  disable_corrector: [],
};

function fail(field: string, message: string): never {
  throw new Error(`Invalid scheduler config: ${field}: ${message}`);
}

/**
 * Parse and validate a raw scheduler config object and resolve it for the class behind `name`,
 * as `Class.from_config(raw)` does. Throws an Error whose message names every offending field,
 * e.g. `Invalid scheduler config: beta_schedule: ...`; settings these schedulers do not implement
 * (thresholding, SDE variants, ...) are refused the same way.
 */
export function parseSchedulerConfig(raw: unknown, name: SchedulerName): SchedulerConfig {
  const className = SCHEDULER_CLASSES[name];
  if (className === undefined) throw new Error(`Unknown scheduler "${String(name)}"`);
  const result = fieldsSchema.safeParse(raw ?? {});
  if (!result.success) {
    const details = result.error.issues
      .map((issue) => `${issue.path.length > 0 ? issue.path.join('.') : '(root)'}: ${issue.message}`)
      .join('; ');
    throw new Error(`Invalid scheduler config: ${details}`);
  }
  const given = result.data as Record<string, unknown>;
  const defaults = CLASS_DEFAULTS[className];
  const overrides = NAME_OVERRIDES[name] ?? {};
  const out: Record<string, unknown> = { className };
  for (const key of Object.keys(UNUSED) as FieldName[]) {
    if (key in overrides) out[key] = overrides[key];
    else if (key in defaults) out[key] = given[key] !== undefined ? given[key] : defaults[key];
    else out[key] = UNUSED[key];
  }
  // diffusers treats a null use_karras_sigmas / use_lu_lambdas as false and a null final_sigmas_type as an error.
  if (out.use_karras_sigmas === null) out.use_karras_sigmas = false;
  if (out.use_lu_lambdas === null) out.use_lu_lambdas = false;
  if (out.final_sigmas_type === null) fail('final_sigmas_type', "must be 'zero' or 'sigma_min'");
  const config = out as unknown as SchedulerConfig;
  if (config.trained_betas !== null && config.trained_betas.length !== config.num_train_timesteps) {
    fail('trained_betas', `expected ${config.num_train_timesteps} values, got ${config.trained_betas.length}`);
  }
  checkSupported(config);
  return config;
}

/** Settings diffusers has but these schedulers do not implement: refused rather than silently ignored. */
function checkSupported(c: SchedulerConfig): void {
  const cls = c.className;
  if (c.thresholding) fail('thresholding', 'dynamic thresholding is not supported');
  if (cls === 'DPMSolverMultistepScheduler') {
    if (c.solver_type !== 'midpoint' && c.solver_type !== 'heun') fail('solver_type', "must be 'midpoint' or 'heun'");
    if (c.use_lu_lambdas) fail('use_lu_lambdas', 'Lu lambdas are not supported');
    if (c.variance_type !== null) fail('variance_type', 'learned variance is not supported');
  }
  if (cls === 'UniPCMultistepScheduler') {
    if (c.solver_type !== 'bh1' && c.solver_type !== 'bh2') fail('solver_type', "must be 'bh1' or 'bh2'");
    if (!c.predict_x0) fail('predict_x0', 'only the data-prediction (predict_x0: true) form is supported');
    if (c.solver_order !== 1 && c.solver_order !== 2) fail('solver_order', 'UNIPC supports orders 1 and 2');
  }
  if (cls === 'EulerDiscreteScheduler' && c.interpolation_type === 'log_linear') {
    fail('interpolation_type', "'log_linear' is not supported");
  }
  if (cls === 'EulerDiscreteScheduler' && c.timestep_type === 'continuous' && c.prediction_type === 'v_prediction') {
    fail('timestep_type', "'continuous' timesteps (EDM) are not supported");
  }
}

/** SD 1.5's scheduler_config.json resolved for `name`. */
export function defaultSchedulerConfig(name: SchedulerName): SchedulerConfig {
  return parseSchedulerConfig(SD15_SCHEDULER_CONFIG, name);
}
