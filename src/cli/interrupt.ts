import { ExitCode } from './errors.js';

/**
 * Ctrl-C while a job runs: the first SIGINT aborts `signal` (the command then cancels its job
 * and exits 1); a second one exits at once, without waiting for the cancel.
 */
export class Interrupt {
  private readonly controller = new AbortController();
  private readonly onSignal = () => {
    if (!this.controller.signal.aborted) {
      this.controller.abort();
      return;
    }
    this.stderr.write('\ninterrupted again: exiting without waiting for the cancel\n');
    process.exit(ExitCode.INTERRUPTED);
  };

  private constructor(private readonly stderr: Pick<NodeJS.WriteStream, 'write'>) {
    process.on('SIGINT', this.onSignal);
  }

  /** Starts listening for Ctrl-C; dispose() restores Node's default (exit at once). */
  static listen(stderr: Pick<NodeJS.WriteStream, 'write'>): Interrupt {
    return new Interrupt(stderr);
  }

  get signal(): AbortSignal {
    return this.controller.signal;
  }

  dispose(): void {
    process.off('SIGINT', this.onSignal);
  }
}
