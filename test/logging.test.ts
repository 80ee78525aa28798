import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { Writable } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CancelJobDocument, JobStatusDocument, Text2ImageDocument } from '../src/client/generated/graphql.js';
import { loadConfig } from '../src/config.js';
import { createLogger, jobLogger } from '../src/logger.js';
import { collect, startTestServer, waitFor, type TestServer } from './helpers/test-server.js';

type Line = Record<string, unknown> & { msg: string; jobId?: string };

/** A writable that keeps every chunk written to it. */
function capture(): { stream: Writable; text: () => string } {
  const chunks: string[] = [];
  const stream = new Writable({
    write(chunk: Buffer | string, _enc, done) {
      chunks.push(chunk.toString());
      done();
    },
  });
  return { stream, text: () => chunks.join('') };
}

describe('log lines about a job carry its id', () => {
  let server: TestServer;
  let receiver: Server;
  let receiverUrl: string;
  const out = capture();
  const lines = () =>
    out
      .text()
      .split('\n')
      .filter(Boolean)
      .map((l) => JSON.parse(l) as Line);

  beforeAll(async () => {
    receiver = createServer((_req, res) => res.writeHead(500).end('no'));
    await new Promise<void>((resolve) => receiver.listen(0, '127.0.0.1', resolve));
    receiverUrl = `http://127.0.0.1:${(receiver.address() as AddressInfo).port}/hook`;
    server = await startTestServer({
      env: {
        LOG_LEVEL: 'debug',
        LOG_FORMAT: 'json',
        WEBHOOK_ALLOW_HOSTS: '127.0.0.1',
        WEBHOOK_RETRY_BASE_MS: '20',
        WEBHOOK_MAX_ATTEMPTS: '2',
      },
      app: { logDestination: out.stream },
    });
  });
  afterAll(async () => {
    await server.stop();
    await new Promise((resolve) => receiver.close(resolve));
  });

  it('created, handed to the engine, retried, failed, canceled, finished, webhooks: every line names its job', async () => {
    const ids: string[] = [];
    const run = async (input: Record<string, unknown>) => {
      const created = await server.gql(Text2ImageDocument, { input: { prompt: 'p', ...input } });
      expect(created.errors).toBeUndefined();
      const id = created.data!.text2image.id;
      ids.push(id);
      return (await collect(server.ws(), JobStatusDocument, { id })).values.at(-1)!.jobStatus;
    };
    // Succeeds, after one refused submission; its webhook fails twice and is given up.
    server.upstream.behaviour.unavailableSubmits = 2; // the client's own retry (IMAGEPIPELINE_RETRIES=1) meets the second
    expect((await run({ webhookUrl: receiverUrl })).status).toBe('SUCCESS');
    // Fails upstream.
    server.upstream.behaviour.failWith = 'out of memory';
    expect((await run({})).status).toBe('FAILURE');
    server.upstream.behaviour.failWith = null;
    // Canceled while held.
    server.upstream.behaviour.hold = true;
    const held = (await server.gql(Text2ImageDocument, { input: { prompt: 'held' } })).data!.text2image.id;
    ids.push(held);
    await waitFor(() => server.upstream.jobs.size >= 3);
    expect((await server.gql(CancelJobDocument, { id: held })).data!.cancelJob.status).toBe('CANCELED');
    await waitFor(() => lines().some((l) => l.msg === 'webhook given up'));

    const all = lines();
    // Lines a person reads to follow one job, each with its id as a field.
    for (const msg of [
      'job created',
      'engine unavailable; submission will be retried',
      'job handed to the engine',
      'job changed status',
      'job finished',
      'webhook will be retried',
      'webhook given up',
    ]) {
      const found = all.filter((l) => l.msg === msg);
      expect(found.length, msg).toBeGreaterThan(0);
      for (const line of found) expect(ids, `${msg}: ${JSON.stringify(line)}`).toContain(line.jobId);
    }
    expect(all.filter((l) => l.msg === 'job finished').map((l) => [l.jobId, l.status])).toEqual([
      [ids[0], 'SUCCESS'],
      [ids[1], 'FAILURE'],
      [ids[2], 'CANCELED'],
    ]);
    // And any line that mentions a job at all names it in jobId.
    for (const line of all) {
      const text = JSON.stringify({ ...line, jobId: undefined });
      for (const id of ids) if (text.includes(id)) expect(line.jobId, text).toBe(id);
    }
  });
});

describe('log format', () => {
  const lineOf = (format: 'auto' | 'json' | 'pretty', isTTY: boolean) => {
    const out = capture();
    const logger = createLogger('info', { format, destination: out.stream, isTTY });
    jobLogger(logger, 'job-123').info({ status: 'SUCCESS' }, 'job finished');
    return out.text();
  };

  it('JSON when not on a terminal, or when asked; pretty on a terminal, or when asked', () => {
    expect(loadConfig({}).logFormat).toBe('auto');
    expect(loadConfig({ LOG_FORMAT: 'json' }).logFormat).toBe('json');
    expect(() => loadConfig({ LOG_FORMAT: 'xml' })).toThrow(/LOG_FORMAT/);
    for (const text of [lineOf('auto', false), lineOf('json', true)]) {
      expect(JSON.parse(text)).toMatchObject({ level: 30, msg: 'job finished', jobId: 'job-123', status: 'SUCCESS' });
    }
    for (const text of [lineOf('auto', true), lineOf('pretty', false)]) {
      expect(text.startsWith('{')).toBe(false);
      expect(text).toMatch(/INFO.*job finished/);
      expect(text).toMatch(/jobId: "job-123"/);
    }
  });
});
