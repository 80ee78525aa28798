import { print } from 'graphql';
import type { Client } from 'graphql-ws';
import { JobStatusDocument, type JobStatusSubscription } from '../../src/client/generated/graphql.js';

export type JobState = JobStatusSubscription['jobStatus'];

/** A jobStatus subscription kept open: every value with its arrival time, and its end. */
export interface Following {
  values: { at: number; job: JobState }[];
  /** Resolves with the last state once the subscription completes (or with the error). */
  done: Promise<JobState>;
  /** Resolves with the first value (so far or to come) that satisfies the test. */
  until(test: (job: JobState) => boolean, timeoutMs?: number): Promise<JobState>;
  stop(): void;
}

export function follow(client: Client, id: string, timeoutMs = 60_000): Following {
  const values: { at: number; job: JobState }[] = [];
  const waiters: { test: (job: JobState) => boolean; resolve: (job: JobState) => void }[] = [];
  let dispose = () => {};
  const done = new Promise<JobState>((resolve, reject) => {
    const timer = setTimeout(() => {
      dispose();
      reject(new Error(`job ${id}: the subscription did not end in ${timeoutMs} ms; last ${JSON.stringify(values.at(-1)?.job)}`));
    }, timeoutMs);
    dispose = client.subscribe<JobStatusSubscription>(
      { query: print(JobStatusDocument), variables: { id } },
      {
        next: (result) => {
          if (result.errors) {
            clearTimeout(timer);
            reject(new Error(JSON.stringify(result.errors)));
            return;
          }
          const job = result.data!.jobStatus;
          values.push({ at: Date.now(), job });
          for (const w of [...waiters]) {
            if (w.test(job)) {
              waiters.splice(waiters.indexOf(w), 1);
              w.resolve(job);
            }
          }
        },
        error: (err) => {
          clearTimeout(timer);
          reject(err instanceof Error ? err : new Error(JSON.stringify(err)));
        },
        complete: () => {
          clearTimeout(timer);
          const last = values.at(-1);
          if (last) resolve(last.job);
          else reject(new Error(`job ${id}: the subscription ended without a value`));
        },
      },
    );
  });
  done.catch(() => {});
  return {
    values,
    done,
    until(test, untilMs = timeoutMs) {
      const seen = values.find((v) => test(v.job));
      if (seen) return Promise.resolve(seen.job);
      return new Promise((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`job ${id}: condition not met in ${untilMs} ms`)), untilMs);
        waiters.push({
          test,
          resolve: (job) => {
            clearTimeout(timer);
            resolve(job);
          },
        });
      });
    },
    stop: () => dispose(),
  };
}
