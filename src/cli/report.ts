import { describeField } from './args.js';
import { CliError, ExitCode, ServerError, UsageError } from './errors.js';

/**
 * Writes an error to stderr and returns its exit code. A refused input lists each field the
 * server named, with the option that set it and the reason, one per line.
 */
export function reportError(error: unknown, stderr: Pick<NodeJS.WriteStream, 'write'>): number {
  if (error instanceof ServerError && error.issues.length > 0) {
    stderr.write(`error: the server refused the request (${error.code ?? 'no code'}):\n`);
    for (const issue of error.issues) stderr.write(`  ${describeField(issue.field)}: ${issue.message}\n`);
    return error.exitCode;
  }
  if (error instanceof ServerError) {
    stderr.write(`error: ${error.message}${error.code ? ` (${error.code})` : ''}\n`);
    return error.exitCode;
  }
  if (error instanceof CliError) {
    stderr.write(`error: ${error.message}\n`);
    for (const line of error.details) stderr.write(`  ${line}\n`);
    if (error instanceof UsageError) stderr.write('(sd15 --help shows the usage)\n');
    return error.exitCode;
  }
  // A bug of the CLI itself: say so with the stack, and do not claim the input was wrong.
  stderr.write(`sd15: unexpected error: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`);
  return ExitCode.FAILED;
}
