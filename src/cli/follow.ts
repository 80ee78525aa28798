import { FollowJobDocument, JobSummaryDocument, type JobStateFragment } from '../client/generated/graphql.js';
import type { ApiClient } from './client.js';
import { CliError, ExitCode } from './errors.js';

/** A job's state, without its request (see the JobState fragment). */
export type Job = JobStateFragment;

export type FollowOutcome = { kind: 'finished'; job: Job } | { kind: 'interrupted' };

const FINAL = new Set<Job['status']>(['SUCCESS', 'FAILURE', 'CANCELED']);

export const isFinal = (job: Pick<Job, 'status'>): boolean => FINAL.has(job.status);

/**
 * Follows a job over the jobStatus subscription (its current state first, then every change)
 * until it is final, calling onUpdate for each state; or until `signal` aborts (Ctrl-C).
 */
export async function followJob(client: ApiClient, id: string, onUpdate: (job: Job) => void, signal: AbortSignal): Promise<FollowOutcome> {
  const ended = await new Promise<FollowOutcome | 'completed'>((resolve, reject) => {
    if (signal.aborted) return resolve({ kind: 'interrupted' });
    let settled = false;
    const settle = (finish: () => void) => {
      if (settled) return;
      settled = true;
      signal.removeEventListener('abort', onAbort);
      dispose();
      finish();
    };
    const onAbort = () => settle(() => resolve({ kind: 'interrupted' }));
    const dispose = client.subscribe(
      FollowJobDocument,
      { id },
      {
        next: ({ jobStatus }) => {
          if (settled) return;
          onUpdate(jobStatus);
          if (isFinal(jobStatus)) settle(() => resolve({ kind: 'finished', job: jobStatus }));
        },
        error: (err) => settle(() => reject(err)),
        complete: () => settle(() => resolve('completed')),
      },
    );
    signal.addEventListener('abort', onAbort);
  });
  if (ended !== 'completed') return ended;

  // The subscription completes only after a final state; if it ended early (a server going
  // away between retries), ask once more rather than guess.
  const { job } = await client.request(JobSummaryDocument, { id });
  if (job && isFinal(job)) {
    onUpdate(job);
    return { kind: 'finished', job };
  }
  throw new CliError(
    `the server ended the updates of job ${id} before it finished; follow it again with: sd15 watch ${id}`,
    ExitCode.FAILED,
  );
}
