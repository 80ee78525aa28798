import { print } from 'graphql';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { JobStatusDocument, Text2ImageDocument } from '../src/client/generated/graphql.js';
import { startTestServer, waitFor, type TestServer } from './helpers/test-server.js';

describe('subscriptions and the poller', () => {
  let server: TestServer;

  beforeAll(async () => {
    server = await startTestServer();
    server.upstream.behaviour.hold = true;
  });
  afterAll(() => server.stop());

  const heldJob = async () => {
    const created = await server.gql(Text2ImageDocument, { input: { prompt: 'a quiet job' } });
    const id = created.data!.text2image.id;
    await waitFor(() => [...server.upstream.jobs.values()].some((j) => j.body.prompt === 'a quiet job' && j.statusCalls > 0));
    return id;
  };

  it('frees every listener after many subscribe/unsubscribe cycles on one socket and on fresh sockets', async () => {
    const id = await heldJob();
    const baseline = (await server.metrics()).sd_job_subscriptions;
    const client = server.ws();
    for (let i = 0; i < 200; i++) {
      await new Promise<void>((resolve, reject) => {
        const dispose = client.subscribe(
          { query: print(JobStatusDocument), variables: { id } },
          { next: () => (dispose(), resolve()), error: reject, complete: () => undefined },
        );
      });
    }
    await waitFor(async () => (await server.metrics()).sd_job_subscriptions === baseline);

    for (let i = 0; i < 30; i++) {
      const c = server.ws();
      await new Promise<void>((resolve, reject) => {
        c.subscribe(
          { query: print(JobStatusDocument), variables: { id } },
          { next: () => resolve(), error: reject, complete: () => undefined },
        );
      });
      await c.dispose();
    }
    await waitFor(async () => {
      const m = await server.metrics();
      return m.sd_job_subscriptions === baseline && m.sd_websocket_connections! <= 1;
    });
    expect((await server.metrics()).sd_job_subscriptions).toBe(baseline);
  });

  it('polls a job at most once per interval however many clients follow it, backing off while it waits', async () => {
    const watched = await heldJob();
    const alone = await heldJob();
    const jobs = [...server.upstream.jobs.values()];
    const [a, b] = [jobs.at(-2)!, jobs.at(-1)!];
    const subscribers = Array.from({ length: 20 }, () => server.ws());
    const disposers = subscribers.map((c) =>
      c.subscribe({ query: print(JobStatusDocument), variables: { id: watched } }, { next: () => {}, error: () => {}, complete: () => {} }),
    );
    await waitFor(async () => (await server.metrics()).sd_job_subscriptions! >= 20);
    const start = [a.statusCalls, b.statusCalls];
    const t0 = Date.now();
    await new Promise((r) => setTimeout(r, 600));
    const elapsed = Date.now() - t0;
    const calls = [a.statusCalls - start[0]!, b.statusCalls - start[1]!];
    // Subscribers do not add polls: both jobs are polled alike.
    expect(Math.abs(calls[0]! - calls[1]!)).toBeLessThanOrEqual(2);
    // Unchanged jobs back off to the maximum interval (50 ms here), far below one call per minimum interval (10 ms).
    expect(calls[0]!).toBeLessThanOrEqual(Math.ceil(elapsed / 50) + 2);
    expect(calls[0]!).toBeGreaterThan(0);
    disposers.forEach((d) => d());
    void alone;
  });
});
