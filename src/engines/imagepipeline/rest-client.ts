import { setTimeout as sleep } from 'node:timers/promises';
import { Agent, errors as undiciErrors, request, type Dispatcher } from 'undici';
import { restPaths, restReplySchema, type RestReply, type RestRequestBody } from '../../contract/rest-protocol.js';
import type { JobMode } from '../../generation/request.js';
import { sniffImageType } from '../../images/sniff.js';
import { EngineProtocolError, EngineUnavailableError } from '../engine.js';
import { backoffDelay } from '../../retry/backoff.js';

export interface RestClientOptions {
  baseUrl: string;
  apiKey: string | undefined;
  timeoutMs: number;
  /** Extra attempts after a network error or a 5xx/429 answer. */
  retries: number;
  maxImageBytes: number;
  /** First back-off delay; doubles on each retry. */
  retryBaseDelayMs?: number;
}

const MAX_REPLY_BYTES = 1024 * 1024;

/**
 * A client of the contract's REST protocol over undici. Transient faults (network errors,
 * timeouts, 5xx, 429) are retried with exponential back-off and then surface as
 * EngineUnavailableError; replies that break the protocol surface as EngineProtocolError.
 */
export class ImagePipelineRestClient {
  private readonly agent: Agent;

  constructor(private readonly options: RestClientOptions) {
    this.agent = new Agent({
      connections: 64,
      keepAliveTimeout: 10_000,
      headersTimeout: options.timeoutMs,
      bodyTimeout: options.timeoutMs,
      connect: { timeout: Math.min(options.timeoutMs, 10_000) },
    });
  }

  /**
   * POST /sd/{mode}/v1. A 4xx answer in the contract's FAILURE shape is returned, not thrown.
   * The idempotency key (our job id) makes a repeated submission (a retry, or a resubmit after
   * this process died before saving the upstream's id) return the first upstream job on
   * upstreams that honour Idempotency-Key, as this server does; others ignore the header.
   */
  submit(mode: JobMode, body: RestRequestBody, idempotencyKey?: string): Promise<RestReply> {
    const headers: Record<string, string> = idempotencyKey ? { 'idempotency-key': idempotencyKey } : {};
    return this.withRetries(`submit ${mode}`, () => this.call('POST', restPaths.submit(mode), JSON.stringify(body), headers)).then(
      (r) => r ?? failure('the engine answered 404 to a submission'),
    );
  }

  /** GET /sd/{mode}/v1/status/{id}; null when the engine does not know the id (404). preview: ask for the newest live preview. */
  status(mode: JobMode, id: string, options: { preview?: boolean } = {}): Promise<RestReply | null> {
    return this.withRetries(`status ${id}`, () => this.call('GET', restPaths.status(mode, id, options.preview)));
  }

  /** Fetches one result image, resolving relative URLs against the engine's base URL. */
  download(url: string): Promise<{ data: Buffer; contentType: string }> {
    const target = new URL(url, `${this.options.baseUrl}/`);
    if (target.protocol !== 'http:' && target.protocol !== 'https:') {
      return Promise.reject(new EngineProtocolError(`download URL ${url} is not http(s)`));
    }
    return this.withRetries(`download ${target.pathname}`, async () => {
      const res = await this.send(target, { method: 'GET' });
      if (res.statusCode >= 500 || res.statusCode === 429) {
        await res.body.dump();
        throw new EngineUnavailableError(`image download answered HTTP ${res.statusCode}`);
      }
      if (res.statusCode !== 200) {
        await res.body.dump();
        throw new EngineProtocolError(`image download ${target.pathname} answered HTTP ${res.statusCode}`);
      }
      const data = await readLimited(res.body, this.options.maxImageBytes, 'result image');
      const contentType = sniffImageType(data);
      if (!contentType) throw new EngineProtocolError('a result image is not a PNG, JPEG or WebP file');
      return { data, contentType };
    });
  }

  /**
   * Whether the engine answers at all: GET /healthz, one attempt. Any HTTP answer below 500
   * counts as alive (a hosted upstream without that path answers 404, and that is an answer).
   */
  async probe(): Promise<void> {
    const res = await this.send(new URL('/healthz', `${this.options.baseUrl}/`), { method: 'GET' });
    await res.body.dump();
    if (res.statusCode >= 500) throw new EngineUnavailableError(`the engine's health check answered HTTP ${res.statusCode}`);
  }

  close(): Promise<void> {
    return this.agent.close();
  }

  private async call(
    method: 'GET' | 'POST',
    path: string,
    body?: string,
    extraHeaders: Record<string, string> = {},
  ): Promise<RestReply | null> {
    const res = await this.send(new URL(path, `${this.options.baseUrl}/`), {
      method,
      body,
      headers: { ...(body ? { 'content-type': 'application/json' } : {}), ...extraHeaders },
    });
    const text = (await readLimited(res.body, MAX_REPLY_BYTES, 'reply')).toString('utf8');
    if (res.statusCode >= 500 || res.statusCode === 429) {
      throw new EngineUnavailableError(`the engine answered HTTP ${res.statusCode}${snippet(text)}`);
    }
    if (res.statusCode === 404 && method === 'GET') return null;
    let json: unknown;
    try {
      json = JSON.parse(text);
    } catch {
      if (res.statusCode >= 400) return failure(`the engine refused the request (HTTP ${res.statusCode})${snippet(text)}`);
      throw new EngineProtocolError(`the engine sent a reply that is not JSON (HTTP ${res.statusCode})${snippet(text)}`);
    }
    const parsed = restReplySchema.safeParse(json);
    if (!parsed.success) {
      if (res.statusCode >= 400) return failure(`the engine refused the request (HTTP ${res.statusCode})${snippet(text)}`);
      const where = parsed.error.issues[0];
      throw new EngineProtocolError(
        `the engine sent a malformed reply: ${where ? `${where.path.join('.') || 'body'}: ${where.message}` : 'unknown shape'}`,
      );
    }
    if (res.statusCode >= 400 && parsed.data.status !== 'FAILURE') {
      return failure(`the engine refused the request (HTTP ${res.statusCode})`);
    }
    return parsed.data;
  }

  private async send(url: URL, opts: { method: 'GET' | 'POST'; body?: string; headers?: Record<string, string> }) {
    const headers: Record<string, string> = { accept: 'application/json, image/*', ...opts.headers };
    // Only the engine's own origin gets the key: result URLs may point at a CDN.
    if (this.options.apiKey && url.origin === new URL(this.options.baseUrl).origin) {
      headers['api-key'] = this.options.apiKey;
    }
    try {
      return await request(url, {
        method: opts.method,
        body: opts.body,
        headers,
        // The agent's headersTimeout/bodyTimeout bound each request; no per-request AbortSignal,
        // whose timer and DOMException cost more than the call itself under load.
        dispatcher: this.agent as Dispatcher,
      });
    } catch (err) {
      throw new EngineUnavailableError(`could not reach the engine at ${url.origin}: ${describeNetworkError(err)}`, {
        cause: err,
      });
    }
  }

  private async withRetries<T>(what: string, attempt: () => Promise<T>): Promise<T> {
    const base = this.options.retryBaseDelayMs ?? 200;
    for (let i = 0; ; i++) {
      try {
        return await attempt();
      } catch (err) {
        if (!(err instanceof EngineUnavailableError) || i >= this.options.retries) throw err;
        // Full jitter keeps many jobs from retrying in lockstep against a struggling upstream.
        await sleep(backoffDelay(i, { baseMs: base, jitter: 'full' }));
      }
    }
  }
}

function failure(error: string): RestReply {
  return { status: 'FAILURE', error };
}

function snippet(text: string): string {
  const t = text.trim().replace(/\s+/g, ' ');
  return t ? `: ${t.length > 200 ? `${t.slice(0, 200)}…` : t}` : '';
}

function describeNetworkError(err: unknown): string {
  if (err instanceof undiciErrors.UndiciError) return `${err.code ?? err.name}: ${err.message}`;
  if (err instanceof Error) {
    const code = (err as NodeJS.ErrnoException).code;
    return code ? `${code}: ${err.message}` : err.message;
  }
  return String(err);
}

async function readLimited(body: Dispatcher.ResponseData['body'], limit: number, what: string): Promise<Buffer> {
  const chunks: Buffer[] = [];
  let size = 0;
  try {
    for await (const chunk of body) {
      size += (chunk as Buffer).length;
      if (size > limit) {
        body.destroy();
        throw new EngineProtocolError(`the engine's ${what} is larger than ${limit} bytes`);
      }
      chunks.push(chunk as Buffer);
    }
  } catch (err) {
    if (err instanceof EngineProtocolError) throw err;
    throw new EngineUnavailableError(`the engine's ${what} was cut off: ${describeNetworkError(err)}`, { cause: err });
  }
  return Buffer.concat(chunks);
}
