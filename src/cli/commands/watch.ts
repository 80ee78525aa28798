import { JobSummaryDocument } from '../../client/generated/graphql.js';
import type { Command } from '../args.js';
import type { CommandContext } from '../context.js';
import { CliError, ExitCode } from '../errors.js';
import { Interrupt } from '../interrupt.js';
import { followToEnd, jobHeader } from './follow-to-end.js';

/** sd15 watch ID: follows an existing job (finished or not) like generate does, and saves its images. */
export async function watch(ctx: CommandContext, command: Extract<Command, { name: 'watch' }>): Promise<number> {
  const { job } = await ctx.client.request(JobSummaryDocument, { id: command.id });
  // Another key's job is null too: a key sees only its own.
  if (!job) throw new CliError(`no job ${command.id} for this API key`, ExitCode.USAGE);
  if (!command.json) ctx.stdout.write(jobHeader(job.id, job.mode, job.seed));
  const interrupt = Interrupt.listen(ctx.stderr);
  try {
    return await followToEnd(ctx, job.id, command, interrupt);
  } finally {
    interrupt.dispose();
  }
}
