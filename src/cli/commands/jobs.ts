import { JobListDocument } from '../../client/generated/graphql.js';
import type { Command } from '../args.js';
import type { CommandContext } from '../context.js';
import { ExitCode } from '../errors.js';
import { oneLine, table, writeJson } from '../output.js';

const PROMPT_WIDTH = 60;

/** sd15 jobs: one page of the key's jobs, newest first; where the next page starts goes to stderr. */
export async function listJobs(ctx: CommandContext, command: Extract<Command, { name: 'jobs' }>): Promise<number> {
  const { jobs } = await ctx.client.request(JobListDocument, { first: command.first, after: command.after });
  const nodes = jobs.edges.map((edge) => edge.node);
  if (command.json) {
    writeJson(ctx.stdout, { jobs: nodes, pageInfo: jobs.pageInfo });
    return ExitCode.OK;
  }
  if (nodes.length === 0) ctx.stderr.write(command.after ? 'no more jobs\n' : 'no jobs yet\n');
  else {
    const rows = nodes.map((job) => [
      job.id,
      job.mode.toLowerCase(),
      job.status,
      job.createdAt.replace(/\.\d+Z$/, 'Z'),
      oneLine(job.parameters.prompt, PROMPT_WIDTH),
    ]);
    ctx.stdout.write(table(['ID', 'MODE', 'STATUS', 'CREATED', 'PROMPT'], rows));
  }
  if (jobs.pageInfo.hasNextPage && jobs.pageInfo.endCursor) {
    ctx.stderr.write(`more: sd15 jobs --after ${jobs.pageInfo.endCursor}\n`);
  }
  return ExitCode.OK;
}
