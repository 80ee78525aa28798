import type { ApiClient } from './client.js';

export type Output = Pick<NodeJS.WriteStream, 'write'> & { isTTY?: boolean };

/** What every command gets: the API, and where results (stdout) and errors (stderr) go. */
export interface CommandContext {
  client: ApiClient;
  stdout: Output;
  stderr: Output;
}
