import { JOB_STATUSES, type Job } from '../jobs/job.js';

/**
 * A job as it travels on Redis (pub/sub events): JSON, with its dates as ISO strings. The
 * receiving side checks the shape it relies on and revives the dates; anything else is dropped.
 */
export function encodeJob(job: Job): string {
  return JSON.stringify(job);
}

const date = (v: unknown): Date | null => {
  if (v === null || v === undefined) return null;
  const d = new Date(v as string);
  return Number.isNaN(d.getTime()) ? null : d;
};

export function decodeJob(value: unknown): Job | null {
  if (typeof value !== 'object' || value === null) return null;
  const raw = value as Record<string, unknown>;
  if (typeof raw.id !== 'string' || typeof raw.version !== 'number') return null;
  if (!(JOB_STATUSES as readonly unknown[]).includes(raw.status)) return null;
  const createdAt = date(raw.createdAt);
  if (!createdAt) return null;
  return { ...(raw as unknown as Job), createdAt, startedAt: date(raw.startedAt), finishedAt: date(raw.finishedAt) };
}
