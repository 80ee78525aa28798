import { createHmac } from 'node:crypto';
import { createServer, type IncomingHttpHeaders, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CancelJobDocument, Text2ImageDocument, WebhookSecretDocument } from '../src/client/generated/graphql.js';
import { FakeImagePipeline } from './fixtures/fake-imagepipeline.js';
import { startTestServer, waitFor, type TestServer } from './helpers/test-server.js';

/** A receiver's check, written from the README rather than the server's code: "sha256=" + hex HMAC-SHA256 of the raw body. */
const verifySignature = (secret: string, body: string, header: string) =>
  header === `sha256=${createHmac('sha256', secret).update(body, 'utf8').digest('hex')}`;

/** A webhook receiver on loopback that records calls and answers what the test tells it to. */
class Receiver {
  calls: { path: string; headers: IncomingHttpHeaders; body: string }[] = [];
  /** Status to answer per path, in order; 204 once a path's list is used up. */
  script = new Map<string, number[]>();
  private server: Server | null = null;
  port = 0;

  async start(port = 0) {
    this.server = createServer((req, res) => {
      let body = '';
      req.on('data', (c: Buffer) => (body += c.toString()));
      req.on('end', () => {
        const path = req.url ?? '/';
        this.calls.push({ path, headers: req.headers, body });
        const status = this.script.get(path)?.shift() ?? 204;
        res.writeHead(status).end();
      });
    });
    await new Promise<void>((r) => this.server!.listen(port, '127.0.0.1', r));
    this.port = (this.server.address() as AddressInfo).port;
  }
  url(path: string) {
    return `http://127.0.0.1:${this.port}${path}`;
  }
  callsTo(path: string) {
    return this.calls.filter((c) => c.path === path);
  }
  async stop() {
    this.server?.closeAllConnections();
    await new Promise<void>((r) => (this.server ? this.server.close(() => r()) : r()));
    this.server = null;
  }
}

const env = { WEBHOOK_ALLOW_HOSTS: '127.0.0.1', WEBHOOK_RETRY_BASE_MS: '40', WEBHOOK_MAX_ATTEMPTS: '4' };

describe('webhooks', () => {
  const receiver = new Receiver();
  let server: TestServer;
  let secret: string;

  beforeAll(async () => {
    await receiver.start();
    server = await startTestServer({ env });
    secret = (await server.gql(WebhookSecretDocument, {})).data!.webhookSecret;
  });
  afterAll(async () => {
    await server.stop();
    await receiver.stop();
  });

  const create = (path: string, extra: Record<string, unknown> = {}) =>
    server.gql(Text2ImageDocument, { input: { prompt: 'a heron', webhookUrl: receiver.url(path), ...extra } });

  it('POSTs the finished job, signed with the key’s secret, with a delivery id', async () => {
    expect(secret).toMatch(/^whsec_/);
    const created = await create('/done');
    const id = created.data!.text2image.id;
    const [call] = (await waitFor(() => (receiver.callsTo('/done').length ? receiver.callsTo('/done') : null)))!;
    expect(call!.headers['content-type']).toBe('application/json');
    expect(call!.headers['x-webhook-id']).toMatch(/^[0-9a-f-]{36}$/);
    expect(Number(call!.headers['x-webhook-timestamp'])).toBeGreaterThan(1_600_000_000);
    expect(verifySignature(secret, call!.body, String(call!.headers['x-webhook-signature']))).toBe(true);
    expect(verifySignature(secret, `${call!.body} `, String(call!.headers['x-webhook-signature']))).toBe(false);
    const body = JSON.parse(call!.body) as {
      delivery_id: string;
      event: string;
      job: { id: string; status: string; download_urls: string[] };
    };
    expect(body.delivery_id).toBe(call!.headers['x-webhook-id']);
    expect(body.event).toBe('job.succeeded');
    expect(body.job).toMatchObject({ id, status: 'SUCCESS' });
    expect(body.job.download_urls).toHaveLength(1);
    expect((await fetch(body.job.download_urls[0]!)).status).toBe(200);
  });

  it('retries 5xx and unreachable receivers with back-off under the same delivery id; gives up on other 4xx', async () => {
    receiver.script.set('/flaky', [503, 500]);
    receiver.script.set('/gone', [410]);
    await create('/flaky');
    await create('/gone');
    const calls = (await waitFor(() => (receiver.callsTo('/flaky').length >= 3 ? receiver.callsTo('/flaky') : null)))!;
    expect(new Set(calls.map((c) => c.headers['x-webhook-id'])).size).toBe(1);
    await new Promise((r) => setTimeout(r, 400));
    expect(receiver.callsTo('/flaky')).toHaveLength(3); // delivered on the third: no more
    expect(receiver.callsTo('/gone')).toHaveLength(1);
  });

  it('reports cancels too, and takes the URL from REST as webhook or webhook_url', async () => {
    server.upstream.behaviour.hold = true;
    const created = await create('/canceled');
    await server.gql(CancelJobDocument, { id: created.data!.text2image.id });
    const [call] = (await waitFor(() => (receiver.callsTo('/canceled').length ? receiver.callsTo('/canceled') : null)))!;
    expect(JSON.parse(call!.body)).toMatchObject({ event: 'job.canceled', job: { status: 'CANCELED' } });
    server.upstream.behaviour.hold = false;

    const rest = await fetch(`${server.url}/sd/text2image/v1`, {
      method: 'POST',
      headers: { 'api-key': server.key },
      body: JSON.stringify({ prompt: 'x', webhook: receiver.url('/rest') }),
    });
    expect(rest.status).toBe(200);
    await waitFor(() => receiver.callsTo('/rest').length === 1);
  });

  it('refuses webhook URLs that are not http(s) or point at private addresses, naming the field', async () => {
    for (const [url, why] of [
      ['ftp://example.com/hook', /must be an http\(s\) URL/],
      ['http://169.254.169.254/latest', /link-local/],
      ['http://10.0.0.7/hook', /private/],
    ] as const) {
      const res = await server.gql(Text2ImageDocument, { input: { prompt: 'x', webhookUrl: url } });
      expect(res.errors![0]!.extensions!.code).toBe('BAD_USER_INPUT');
      expect(res.errors![0]!.message).toMatch(/input\.webhookUrl: /);
      expect(res.errors![0]!.message).toMatch(why);
    }
    const rest = await fetch(`${server.url}/sd/text2image/v1`, {
      method: 'POST',
      headers: { 'api-key': server.key },
      body: JSON.stringify({ prompt: 'x', webhook_url: 'http://[::1]/hook' }),
    });
    expect(rest.status).toBe(400);
    expect(((await rest.json()) as { errors: { field: string }[] }).errors[0]!.field).toBe('webhook_url');
  });
});

describe('webhook deliveries survive a restart', () => {
  it('a delivery still failing when the server stops is sent after it starts again', async () => {
    const receiver = new Receiver();
    await receiver.start();
    receiver.script.set('/later', [503, 503, 503, 503, 503, 503]);
    const upstream = new FakeImagePipeline();
    await upstream.start();
    const first = await startTestServer({ upstream, env: { ...env, WEBHOOK_RETRY_BASE_MS: '200', WEBHOOK_MAX_ATTEMPTS: '20' } });
    const { dataDir, key } = first;
    try {
      await first.gql(Text2ImageDocument, { input: { prompt: 'x', webhookUrl: receiver.url('/later') } });
      await waitFor(() => receiver.callsTo('/later').length >= 1);
      await first.stop({ keepData: true });
      receiver.script.set('/later', []);
      const before = receiver.callsTo('/later').length;
      const second = await startTestServer({
        upstream,
        dataDir,
        env: { ...env, WEBHOOK_RETRY_BASE_MS: '200', WEBHOOK_MAX_ATTEMPTS: '20' },
      });
      try {
        const calls = (await waitFor(() => (receiver.callsTo('/later').length > before ? receiver.callsTo('/later') : null), 15_000))!;
        expect(new Set(calls.map((c) => c.headers['x-webhook-id'])).size).toBe(1);
        const secret = (await second.gql(WebhookSecretDocument, {}, key)).data!.webhookSecret;
        const last = calls.at(-1)!;
        expect(verifySignature(secret, last.body, String(last.headers['x-webhook-signature']))).toBe(true);
      } finally {
        await second.stop({ keepData: true });
      }
    } finally {
      await upstream.stop();
      await receiver.stop();
    }
  });
});
