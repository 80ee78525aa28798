import { CancelJobDocument } from '../../client/generated/graphql.js';
import type { CommandContext } from '../context.js';
import { saveImages } from '../download.js';
import { ExitCode, ServerError } from '../errors.js';
import { followJob, type FollowOutcome, type Job } from '../follow.js';
import type { Interrupt } from '../interrupt.js';
import { writeJson } from '../output.js';
import { createProgressReporter, silentProgress } from '../progress.js';

export interface FollowOptions {
  outDir: string;
  json: boolean;
}

/** The line that opens generate's and watch's output: the id to watch or cancel it by later. */
export function jobHeader(id: string, mode: string, seed: number): string {
  return `job ${id} (${mode.toLowerCase()}, seed ${seed})\n`;
}

/**
 * generate's and watch's common end: follows the job with a progress display, saves its images
 * on SUCCESS, reports a failure, or cancels the job on Ctrl-C. Returns the exit code.
 */
export async function followToEnd(ctx: CommandContext, id: string, options: FollowOptions, interrupt: Interrupt): Promise<number> {
  const progress = options.json ? silentProgress : createProgressReporter(ctx.stdout);
  let outcome: FollowOutcome;
  try {
    outcome = await followJob(ctx.client, id, (update) => progress.update(update), interrupt.signal);
  } finally {
    progress.stop();
  }
  if (outcome.kind === 'interrupted') return cancelAfterInterrupt(ctx, id, options.json);
  // The job is over: nothing left to cancel, so a Ctrl-C from here on ends the command at once.
  interrupt.dispose();

  const final = outcome.job;
  const files = final.status === 'SUCCESS' ? await saveImages(ctx.client, final, options.outDir) : [];
  if (options.json) writeJson(ctx.stdout, summary(final, files));
  else for (const file of files) ctx.stdout.write(`${file}\n`);
  if (final.status === 'SUCCESS') return ExitCode.OK;
  if (final.status === 'FAILURE') {
    const error = final.error ?? { code: 'UNKNOWN', message: 'the server gave no reason' };
    ctx.stderr.write(`error: job ${final.id} failed: ${error.code}: ${error.message}\n`);
  } else {
    ctx.stderr.write(`job ${final.id} was canceled\n`);
  }
  return ExitCode.FAILED;
}

async function cancelAfterInterrupt(ctx: CommandContext, id: string, json: boolean): Promise<number> {
  ctx.stderr.write(`interrupted: canceling job ${id}…\n`);
  try {
    const { cancelJob } = await ctx.client.request(CancelJobDocument, { id });
    ctx.stderr.write(`canceled: job ${id} is ${cancelJob.status}\n`);
    if (json) writeJson(ctx.stdout, summary(cancelJob, []));
  } catch (err) {
    if (!(err instanceof ServerError && err.code === 'JOB_ALREADY_FINISHED')) throw err;
    ctx.stderr.write(`not canceled: ${err.message}; sd15 watch ${id} saves its images\n`);
  }
  return ExitCode.FAILED;
}

function summary(job: Pick<Job, 'id' | 'mode' | 'status' | 'seed' | 'error'>, files: string[]) {
  return { id: job.id, mode: job.mode, status: job.status, seed: job.seed, error: job.error, files };
}
