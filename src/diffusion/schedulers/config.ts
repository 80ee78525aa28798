/**
 * Scheduler configuration for Stable Diffusion 1.5, parsed from a diffusers
 * `scheduler/scheduler_config.json` object. Unknown keys (`_class_name`,
 * `skip_prk_steps`, ...) are accepted and ignored. Defaults are SD 1.5's values.
 */
import { z } from 'zod';

export const BETA_SCHEDULES = ['scaled_linear', 'linear'] as const;
export const TIMESTEP_SPACINGS = ['leading', 'trailing', 'linspace'] as const;
export const PREDICTION_TYPES = ['epsilon', 'v_prediction'] as const;
export type PredictionType = (typeof PREDICTION_TYPES)[number];

export const schedulerConfigSchema = z
  .object({
    num_train_timesteps: z.number().int().min(2).max(100_000).default(1000),
    beta_start: z.number().positive().lt(1).default(0.00085),
    beta_end: z.number().positive().lt(1).default(0.012),
    beta_schedule: z.enum(BETA_SCHEDULES).default('scaled_linear'),
    trained_betas: z.array(z.number().gt(0).lt(1)).nullable().default(null),
    steps_offset: z.number().int().min(0).default(1),
    timestep_spacing: z.enum(TIMESTEP_SPACINGS).default('leading'),
    prediction_type: z.enum(PREDICTION_TYPES).default('epsilon'),
    set_alpha_to_one: z.boolean().default(false),
    clip_sample: z.boolean().default(false),
    clip_sample_range: z.number().positive().default(1.0),
  })
  .loose();

export type SchedulerConfig = z.output<typeof schedulerConfigSchema>;
export type SchedulerConfigInput = z.input<typeof schedulerConfigSchema>;

/**
 * Parse and validate a scheduler config object. Throws an Error whose message
 * names every offending field, e.g. `Invalid scheduler config: beta_schedule: ...`.
 */
export function parseSchedulerConfig(raw: unknown = {}): SchedulerConfig {
  const result = schedulerConfigSchema.safeParse(raw ?? {});
  if (!result.success) {
    const details = result.error.issues
      .map((issue) => `${issue.path.length > 0 ? issue.path.join('.') : '(root)'}: ${issue.message}`)
      .join('; ');
    throw new Error(`Invalid scheduler config: ${details}`);
  }
  const config = result.data;
  if (config.trained_betas !== null && config.trained_betas.length !== config.num_train_timesteps) {
    throw new Error(
      `Invalid scheduler config: trained_betas: expected ${config.num_train_timesteps} values, got ${config.trained_betas.length}`,
    );
  }
  return config;
}

/** SD 1.5 defaults, fully resolved. */
export function defaultSchedulerConfig(): SchedulerConfig {
  return parseSchedulerConfig({});
}
