import { CancelJobDocument } from '../../client/generated/graphql.js';
import type { Command } from '../args.js';
import type { CommandContext } from '../context.js';
import { ExitCode } from '../errors.js';
import { writeJson } from '../output.js';

/** sd15 cancel ID: prints "ID STATUS" once the server has canceled it (a finished job is refused: exit 2). */
export async function cancel(ctx: CommandContext, command: Extract<Command, { name: 'cancel' }>): Promise<number> {
  const { cancelJob } = await ctx.client.request(CancelJobDocument, { id: command.id });
  if (command.json) writeJson(ctx.stdout, { id: cancelJob.id, status: cancelJob.status });
  else ctx.stdout.write(`${cancelJob.id} ${cancelJob.status}\n`);
  return ExitCode.OK;
}
