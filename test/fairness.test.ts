import { rmSync } from 'node:fs';
import { Queue } from 'bullmq';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CancelJobDocument, JobDocument, Text2ImageDocument } from '../src/client/generated/graphql.js';
import { FairQueue } from '../src/concurrency/fair-queue.js';
import { fairPriority, QUEUE_NAME } from '../src/queue/job-queue.js';
import type { WorkerApp } from '../src/worker-app.js';
import { follow } from './helpers/follow.js';
import {
  newDataDir,
  queueEnv,
  REDIS_URL,
  removePrefix,
  sharedPostgres,
  startWorker,
  testPrefix,
  type SharedStore,
} from './helpers/queue.js';
import { LOCAL_ENGINE, startTestServer, type TestServer } from './helpers/test-server.js';

/** Takes everything out, in order. */
const drain = <T>(q: FairQueue<T>) => {
  const out: string[] = [];
  for (let next = q.shift(); next; next = q.shift()) out.push(next.id);
  return out;
};

describe('FairQueue: owners in turn, each owner in its own order', () => {
  it('alternates between owners; a newcomer goes next, ahead of a backlog', () => {
    const q = new FairQueue<null>();
    for (let i = 1; i <= 5; i++) q.push('a', `a${i}`, null);
    expect(q.shift()!.id).toBe('a1'); // running
    q.push('b', 'b1', null);
    q.push('b', 'b2', null);
    q.push('c', 'c1', null);
    expect(q.position('b1')).toBe(0);
    expect(q.position('c1')).toBe(1);
    expect(q.position('a2')).toBe(2);
    expect(q.position('b2')).toBe(3);
    expect(q.size).toBe(7);
    expect(drain(q)).toEqual(['b1', 'c1', 'a2', 'b2', 'a3', 'a4', 'a5']);
    expect(q.size).toBe(0);
  });

  it('an owner whose queue emptied comes back behind the owners waiting in the current round, not ahead of them', () => {
    const q = new FairQueue<null>();
    q.push('a', 'a1', null);
    q.push('b', 'b1', null);
    q.push('b', 'b2', null);
    expect(q.shift()!.id).toBe('a1');
    q.push('a', 'a2', null); // a's turn in this round is spent: behind b1, level with b2 (arrived later)
    expect(drain(q)).toEqual(['b1', 'b2', 'a2']);
  });

  it('removal: skipped, positions and size follow; an id is queued once', () => {
    const q = new FairQueue<number>();
    expect(q.push('a', 'x', 1)).toBe(true);
    expect(q.push('a', 'x', 2)).toBe(false);
    q.push('a', 'y', 3);
    q.push('b', 'z', 4);
    expect(q.remove('x')).toBe(true);
    expect(q.remove('x')).toBe(false);
    expect(q.has('x')).toBe(false);
    expect(q.size).toBe(2);
    // y keeps its round (a's second): z, b's first, goes before it.
    expect(q.position('z')).toBe(0);
    expect(q.position('y')).toBe(1);
    expect(q.shift()).toEqual({ id: 'z', owner: 'b', item: 4 });
    expect(q.position('y')).toBe(0);
    expect(drain(q)).toEqual(['y']);
    expect(q.position('y')).toBeNull();
  });

  it('round robin over 10 owners and 10 000 items: each owner keeps its order, and owners alternate', () => {
    const q = new FairQueue<null>();
    let seed = 7;
    const rnd = () => (seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31;
    const pushed = new Map<string, string[]>();
    for (let i = 0; i < 10_000; i++) {
      const owner = `o${Math.floor(rnd() * rnd() * 10)}`; // skewed: o0 has most
      const id = `${owner}:${i}`;
      q.push(owner, id, null);
      pushed.set(owner, [...(pushed.get(owner) ?? []), id]);
    }
    const out = drain(q);
    for (const [owner, ids] of pushed) expect(out.filter((id) => id.startsWith(`${owner}:`))).toEqual(ids);
    // Within the first owners × k items, every owner has k out (k: the smallest backlog).
    const smallest = Math.min(...[...pushed.values()].map((l) => l.length));
    const head = out.slice(0, smallest * pushed.size);
    for (const owner of pushed.keys()) expect(head.filter((id) => id.startsWith(`${owner}:`)).length).toBe(smallest);
  });

  it('with removals and items added while others are taken, each owner keeps its order', () => {
    const q = new FairQueue<null>();
    let seed = 11;
    const rnd = () => (seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31;
    const pushed = new Map<string, string[]>();
    const out: string[] = [];
    for (let i = 0; i < 5_000; i++) {
      const owner = `o${Math.floor(rnd() * 5)}`;
      q.push(owner, `${owner}:${i}`, null);
      pushed.set(owner, [...(pushed.get(owner) ?? []), `${owner}:${i}`]);
      if (rnd() < 0.05) {
        const list = pushed.get(owner)!;
        const victim = list[Math.floor(rnd() * list.length)]!;
        if (q.remove(victim)) list.splice(list.indexOf(victim), 1);
      }
      if (rnd() < 0.4) out.push(q.shift()!.id);
    }
    out.push(...drain(q));
    expect(out.length).toBe([...pushed.values()].reduce((n, l) => n + l.length, 0));
    for (const [owner, ids] of pushed) expect(out.filter((id) => id.startsWith(`${owner}:`))).toEqual(ids);
  });

  it('an owner adding one item each time its last is taken gets one turn per round, not one each time', () => {
    const q = new FairQueue<null>();
    for (let i = 0; i < 10; i++) q.push('b', `b${i}`, null);
    const out: string[] = [];
    let n = 0;
    q.push('a', `a${n++}`, null);
    for (let i = 0; i < 10; i++) {
      const next = q.shift()!;
      out.push(next.id);
      if (next.owner === 'a') q.push('a', `a${n++}`, null);
    }
    expect(out.filter((id) => id.startsWith('b')).length).toBe(5);
  });
});

describe('fairPriority (BullMQ priorities from the owner’s unfinished jobs)', () => {
  it('is the count, at least 1, at most BullMQ’s lowest priority', () => {
    expect([0, 1, 2, 20].map(fairPriority)).toEqual([1, 1, 2, 20]);
    expect(fairPriority(10 ** 9)).toBe(2 ** 21);
  });
});

/**
 * Key A queues 20 jobs, then key B one. Returns A's jobs that started between B's creation and
 * B's start (what B waited for: the one running when B came is not counted), and how many of
 * A's had not started when B came (the backlog B overtook).
 */
async function twentyThenOne(server: TestServer) {
  const input = { prompt: 'a queue', width: 64, height: 64, numInferenceSteps: 8, safetyChecker: false };
  const keyB = await server.newKey('b');
  const a: string[] = [];
  for (let i = 0; i < 20; i++) {
    const created = await server.gql(Text2ImageDocument, { input: { ...input, seed: i } });
    expect(created.errors).toBeUndefined();
    a.push(created.data!.text2image.id);
  }
  const b = (await server.gql(Text2ImageDocument, { input }, keyB)).data!.text2image.id;
  const last = await follow(server.ws({ apiKey: keyB }), b).done;
  expect(last.status).toBe('SUCCESS');
  const [bCreated, bStarted] = [Date.parse(last.createdAt), Date.parse(last.startedAt!)];
  const overtaken: string[] = [];
  let backlog = 0;
  for (const id of a) {
    const job = (await server.gql(JobDocument, { id })).data!.job!;
    const started = job.startedAt ? Date.parse(job.startedAt) : Infinity;
    if (started >= bCreated) backlog++;
    if (started >= bCreated && started < bStarted) overtaken.push(id);
  }
  return { a, b, overtaken, backlog };
}

/** The rest of A's jobs need not run. */
const cancelAll = (server: TestServer, ids: string[]) => Promise.all(ids.map((id) => server.gql(CancelJobDocument, { id })));

describe('fairness in the embedded mode (the local engine, one generation at a time)', () => {
  let server: TestServer;
  beforeAll(async () => {
    server = await startTestServer({ env: { ...LOCAL_ENGINE, RATE_LIMIT_JOBS_BURST: '1000' } });
  }, 60_000);
  afterAll(() => server?.stop());

  it("key A queues 20 jobs, then key B one: B's starts next, after the one running", async () => {
    const { a, overtaken, backlog } = await twentyThenOne(server);
    await cancelAll(server, a);
    console.log(`embedded: ${backlog} of A's jobs waiting when B's came; ${overtaken.length} of them started before it`);
    expect(backlog).toBeGreaterThanOrEqual(10);
    expect(overtaken.length).toBeLessThanOrEqual(1);
  }, 60_000);
});

describe('fairness on the queue (REDIS_URL, one worker, WORKER_CONCURRENCY=1, on Postgres)', () => {
  const prefix = testPrefix('fairness');
  const dataDir = newDataDir();
  let shared: SharedStore;
  let env: Record<string, string>;
  let server: TestServer;
  let worker: WorkerApp;
  let bull: Queue;

  beforeAll(async () => {
    shared = await sharedPostgres('fairness');
    env = queueEnv(prefix, dataDir, shared);
    server = await startTestServer({ dataDir, env });
    worker = await startWorker(env);
    bull = new Queue(QUEUE_NAME, { connection: { url: REDIS_URL }, prefix });
  }, 60_000);
  afterAll(async () => {
    await bull?.close();
    await worker?.stop();
    await server?.stop({ keepData: true });
    await shared?.drop();
    await removePrefix(prefix);
    rmSync(dataDir, { recursive: true, force: true });
  });

  it("key A queues 20 jobs, then key B one: B's starts after at most 1 + WORKER_CONCURRENCY of A's; priorities are the owners' counts", async () => {
    const { a, b, overtaken, backlog } = await twentyThenOne(server);
    console.log(`queue: ${backlog} of A's jobs waiting when B's came; ${overtaken.length} of them started before it`);
    expect(backlog).toBeGreaterThanOrEqual(10);
    expect(overtaken.length).toBeLessThanOrEqual(1 + 1);
    // Each entry's priority is its key's unfinished jobs at add time: A's grow with its backlog
    // (1, 2, 3 …, less the few that ended meanwhile), B's first is 1.
    const priorities = await Promise.all(a.map(async (id) => (await bull.getJob(id))!.priority));
    expect(priorities[0]).toBe(1);
    expect(priorities).toEqual([...priorities].sort((x, y) => x - y));
    expect(priorities.at(-1)).toBeGreaterThanOrEqual(15);
    expect((await bull.getJob(b))!.priority).toBe(1);
    await cancelAll(server, a);
  }, 60_000);
});
