import type { Client } from 'graphql-ws';
import { useCallback, useEffect, useRef, useState } from 'preact/hooks';
import { ApiError } from '../api/api-error';
import { cancelJob, isFinished, submitJob, type GenerationRequest, type JobWithSettings } from '../api/jobs-api';
import { createSubscriptionClient, followJob, type ConnectionState } from '../api/job-subscription';
import { StepTimer } from './step-timer';

/** The job the studio shows: its latest state, the live preview, the time left, and the live connection. */
export interface CurrentJob {
  job: JobWithSettings | null;
  preview: string | null;
  remainingMs: number | null;
  connection: ConnectionState;
  /** The live updates failed (the job goes on on the server). */
  followError: ApiError | null;
  cancelError: ApiError | null;
  canceling: boolean;
}

const EMPTY: CurrentJob = {
  job: null,
  preview: null,
  remainingMs: null,
  connection: 'idle',
  followError: null,
  cancelError: null,
  canceling: false,
};

/**
 * Submits jobs and follows the latest one over graphql-ws until it ends. `onChange` hears of each
 * job created and finished (so the history can refresh).
 */
export function useCurrentJob(apiKey: string, onChange: () => void) {
  const [state, setState] = useState<CurrentJob>(EMPTY);
  const client = useRef<Client | null>(null);
  const unsubscribe = useRef<(() => void) | null>(null);
  const notify = useRef(onChange);
  notify.current = onChange;

  // One WebSocket client per key; a new key forgets the job shown.
  useEffect(() => {
    setState(EMPTY);
    if (!apiKey) return;
    const created = createSubscriptionClient(apiKey, (connection) => setState((s) => ({ ...s, connection })));
    client.current = created;
    return () => {
      unsubscribe.current?.();
      unsubscribe.current = null;
      client.current = null;
      void created.dispose();
    };
  }, [apiKey]);

  const follow = useCallback((job: JobWithSettings) => {
    unsubscribe.current?.();
    setState((s) => ({ ...EMPTY, connection: s.connection, job }));
    if (!client.current || isFinished(job)) return;
    const timer = new StepTimer();
    const update = (next: Partial<CurrentJob>) => setState((s) => (s.job?.id === job.id ? { ...s, ...next } : s));
    unsubscribe.current = followJob(client.current, job.id, {
      next: (latest) => {
        timer.observe(latest.progress.step);
        setState((s) =>
          s.job?.id === job.id
            ? {
                ...s,
                // The updates carry the state; the settings stay those the job was created with.
                job: { ...s.job, ...latest },
                preview: latest.progress.preview ?? s.preview,
                remainingMs: timer.remainingMs(latest.progress.totalSteps),
                followError: null,
              }
            : s,
        );
        if (isFinished(latest)) notify.current();
      },
      error: (followError) => update({ followError }),
      complete: () => undefined,
    });
  }, []);

  const submit = useCallback(
    async (generation: GenerationRequest) => {
      const job = await submitJob(generation, apiKey);
      follow(job);
      notify.current();
    },
    [apiKey, follow],
  );

  const cancel = useCallback(async () => {
    const id = state.job?.id;
    if (!id) return;
    setState((s) => ({ ...s, canceling: true, cancelError: null }));
    try {
      const job = await cancelJob(id, apiKey);
      setState((s) => (s.job?.id === id ? { ...s, job: isFinished(s.job) ? s.job : { ...s.job, ...job }, canceling: false } : s));
    } catch (err) {
      const cancelError = err instanceof ApiError ? err : new ApiError('server', String(err));
      // Finished in the meantime: the live updates bring its end, which is the answer.
      const raced = cancelError.code === 'JOB_ALREADY_FINISHED';
      setState((s) => ({ ...s, canceling: false, cancelError: raced ? null : cancelError }));
    }
  }, [apiKey, state.job?.id]);

  return { current: state, submit, cancel };
}
