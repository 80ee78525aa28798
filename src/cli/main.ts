import { parseCommand, type Command } from './args.js';
import { ApiClient } from './client.js';
import { cancel } from './commands/cancel.js';
import { generate } from './commands/generate.js';
import { listJobs } from './commands/jobs.js';
import { listModels } from './commands/models.js';
import { watch } from './commands/watch.js';
import type { CommandContext, Output } from './context.js';
import { ExitCode } from './errors.js';
import { reportError } from './report.js';
import { usage } from './usage.js';

export interface CliIO {
  stdout: Output;
  stderr: Output;
  env: NodeJS.ProcessEnv;
}

/** The sd15 command (bin/sd15.js runs it): parses argv, runs one command, returns the exit code. */
export async function main(
  argv: string[],
  io: CliIO = { stdout: process.stdout, stderr: process.stderr, env: process.env },
): Promise<number> {
  let command: Command;
  try {
    command = parseCommand(argv, io.env);
  } catch (err) {
    return reportError(err, io.stderr);
  }
  if (command.name === 'help') {
    (command.requested ? io.stdout : io.stderr).write(usage());
    return command.requested ? ExitCode.OK : ExitCode.USAGE;
  }
  const ctx: CommandContext = { client: new ApiClient(command.connection), stdout: io.stdout, stderr: io.stderr };
  try {
    return await run(ctx, command);
  } catch (err) {
    return reportError(err, io.stderr);
  } finally {
    await ctx.client.close();
  }
}

function run(ctx: CommandContext, command: Exclude<Command, { name: 'help' }>): Promise<number> {
  switch (command.name) {
    case 'generate':
      return generate(ctx, command);
    case 'watch':
      return watch(ctx, command);
    case 'jobs':
      return listJobs(ctx, command);
    case 'models':
      return listModels(ctx, command);
    case 'cancel':
      return cancel(ctx, command);
  }
}
