import { describe, expect, it } from 'vitest';
import type { Job, JobStatus } from '../src/jobs/job.js';
import { InProcessJobEvents } from '../src/jobs/job-events.js';
import { JobStream } from '../src/jobs/job-stream.js';
import { patchFromEngineStatus, successPatch } from '../src/jobs/job-transitions.js';
import { testJob } from './helpers/jobs.js';

const job = (version: number, status: JobStatus, step = 0): Job =>
  testJob({ ownerId: 'k1', status, engine: 'e', engineHandle: 'h', progress: step ? { step, totalSteps: 10 } : null, version });

describe('JobStream', () => {
  it('starts with the snapshot, drops stale versions, keeps transitions, coalesces progress, ends after a terminal state', async () => {
    const events = new InProcessJobEvents();
    const stream = new JobStream(events, 'j1');
    events.publish(job(3, 'PROCESSING', 2)); // published between subscribing and reading the snapshot
    stream.begin(job(2, 'PENDING'));
    events.publish(job(3, 'PROCESSING', 2)); // duplicate
    events.publish(job(4, 'PROCESSING', 4));
    events.publish(job(5, 'PROCESSING', 6));
    events.publish(job(6, 'SUCCESS', 10));
    events.publish(job(7, 'FAILURE')); // after the end: ignored
    const seen: string[] = [];
    for await (const j of stream) seen.push(`${j.version}:${j.status}`);
    // v3 and v4 were superseded by v5 while nobody read: progress coalesces, every transition stays.
    expect(seen).toEqual(['2:PENDING', '5:PROCESSING', '6:SUCCESS']);
    expect(events.listenerCount()).toBe(0);
  });

  it('return() while a reader waits ends the read and frees the listener at once', async () => {
    const events = new InProcessJobEvents();
    const stream = new JobStream(events, 'j1').begin(job(1, 'PENDING'));
    await stream.next();
    const pending = stream.next();
    expect(events.listenerCount()).toBe(1);
    await stream.return();
    expect(await pending).toEqual({ value: undefined, done: true });
    expect(events.listenerCount()).toBe(0);
  });
});

describe('patchFromEngineStatus', () => {
  const now = new Date(1000);
  it('turns the first PROCESSING report into a transition with a start time', () => {
    expect(patchFromEngineStatus(job(1, 'PENDING'), { state: 'PROCESSING', step: 1, totalSteps: 10 }, now)).toEqual({
      status: 'PROCESSING',
      startedAt: now,
      progress: { step: 1, totalSteps: 10 },
      engineQueuePosition: null,
    });
  });
  it("takes the engine's own start time where it reports one: a poll sees the start late", () => {
    const began = new Date(400);
    expect(patchFromEngineStatus(job(1, 'PENDING'), { state: 'PROCESSING', step: 4, totalSteps: 10, startedAt: began }, now)).toMatchObject(
      {
        status: 'PROCESSING',
        startedAt: began,
      },
    );
    // A job that ran between two polls starts when the engine began it, not when SUCCESS was seen.
    const images = [{ name: 'x.png', contentType: 'image/png', nsfw: false }];
    expect(successPatch(job(1, 'PENDING'), images, now, began)).toMatchObject({ startedAt: began, finishedAt: now });
    expect(successPatch(job(1, 'PENDING'), images, now)).toMatchObject({ startedAt: now });
    // Once recorded, the start stays.
    const seen = { ...job(2, 'PROCESSING', 5), startedAt: new Date(300) };
    expect(successPatch(seen, images, now, began)).toMatchObject({ startedAt: new Date(300) });
  });
  it('reports nothing when nothing changed, so nothing is written or published', () => {
    expect(patchFromEngineStatus(job(2, 'PROCESSING', 3), { state: 'PROCESSING', step: 3, totalSteps: 10 }, now)).toBeNull();
    expect(patchFromEngineStatus(job(2, 'PROCESSING', 3), { state: 'QUEUED', queuePosition: 1 }, now)).toBeNull();
  });
  it('maps a lost job to FAILURE with ENGINE_LOST_JOB', () => {
    expect(patchFromEngineStatus(job(2, 'PENDING'), { state: 'LOST', message: 'gone' }, now)).toMatchObject({
      status: 'FAILURE',
      error: { code: 'ENGINE_LOST_JOB', message: 'gone' },
      finishedAt: now,
    });
  });
});
