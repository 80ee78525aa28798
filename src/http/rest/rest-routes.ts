import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Principal } from '../../auth/api-key.js';
import { authorize } from '../../auth/permissions.js';
import { apiKeyFromHeaders } from '../../auth/credentials.js';
import { ApiError } from '../../errors.js';
import { InputValidationError, type FieldIssue } from '../../generation/input.js';
import type { Job } from '../../jobs/job.js';
import type { JobMode } from '../../generation/request.js';
import type { JobService } from '../../jobs/job-service.js';
import type { ImageLinks } from '../../images/image-links.js';
import { StorageUnavailableError, storageUnavailableAnswer } from '../../storage/storage-fault.js';
import { fromRestRequestBody, toRestFieldName } from './rest-mapping.js';

/**
 * The contract's REST API, served exactly (docs/api-contract.md):
 *   POST /sd/{mode}/v1                  → {status: "PENDING", id} (or FAILURE + error)
 *   GET  /sd/{mode}/v1/status/{id}      → {status: "SUCCESS", download_urls} | PENDING | FAILURE
 * Same validation, auth, store and engines as GraphQL: a job made here is visible there.
 * Extra fields (state, step, total_steps, progress, queue_position, seed, nsfw, code, errors)
 * only add to the contract's; none changes the meaning of its fields.
 */

export const REST_PREFIX = '/sd/';
const SUBMIT = /^\/sd\/(text2image|image2image|inpainting)\/v1\/?$/;
const PREVIEW_ASKED = /^(1|true|yes)$/i;
const STATUS = /^\/sd\/(text2image|image2image|inpainting)\/v1\/status\/([^/]+)\/?$/;

export interface RestDeps {
  jobs: JobService;
  /** Rejects with StorageUnavailableError while the keys' database cannot be reached. */
  authenticate: (key: string) => Promise<Principal | null>;
  publicBaseUrl: (req: IncomingMessage) => string;
  /** download_urls: through publicBaseUrl, or presigned (IMAGE_URLS). */
  links: ImageLinks;
  /** init_image and mask_image may be data: URLs, so bodies can be large, but not unbounded. */
  maxBodyBytes: number;
}

export async function handleRest(deps: RestDeps, req: IncomingMessage, res: ServerResponse): Promise<void> {
  const url = new URL(req.url ?? '/', 'http://local');
  const submit = SUBMIT.exec(url.pathname);
  const status = STATUS.exec(url.pathname);
  if (!submit && !status) return send(res, 404, failure(`no such endpoint: ${req.method} ${url.pathname}`));
  if (submit && req.method !== 'POST') return send(res, 405, failure('use POST'), { allow: 'POST' });
  if (status && req.method !== 'GET') return send(res, 405, failure('use GET'), { allow: 'GET' });

  const key = apiKeyFromHeaders({ get: (name) => headerValue(req, name) });
  if (!key) return send(res, 401, failure('an API key is required: send it in the API-Key header'));
  let principal;
  try {
    principal = await deps.authenticate(key);
  } catch (err) {
    if (err instanceof StorageUnavailableError) return sendApiError(res, storageUnavailableAnswer(err, 'check API keys'));
    throw err;
  }
  if (!principal) return send(res, 401, failure('the API key is not valid'));
  try {
    authorize(principal, submit ? 'jobs.create' : 'jobs.read');
  } catch (err) {
    if (err instanceof ApiError) return send(res, err.httpStatus, { ...failure(err.message), code: err.code });
    throw err;
  }

  try {
    if (submit) {
      const mode = submit[1] as JobMode;
      const body = parseBody(await readBody(req, deps.maxBodyBytes));
      const job = await deps.jobs.create(principal, mode, fromRestRequestBody(body), {
        idempotencyKey: headerValue(req, 'idempotency-key'),
      });
      return send(res, 200, describe(job, await deps.links.urls(job.images, deps.publicBaseUrl(req)), await deps.jobs.queuePosition(job)));
    }
    const id = decodePathSegment(status![2]!);
    // A malformed escape cannot name any job: the same answer as an unknown id.
    const job = id === null ? null : await deps.jobs.get(principal, id);
    if (!job) return send(res, 404, failure(`job "${id ?? status![2]!}" was not found`));
    // preview=1 (an extension, for gateways): the newest live preview since the last such poll.
    const preview = PREVIEW_ASKED.test(url.searchParams.get('preview') ?? '') ? deps.jobs.pollPreview(job) : undefined;
    return send(res, 200, {
      ...describe(job, await deps.links.urls(job.images, deps.publicBaseUrl(req)), await deps.jobs.queuePosition(job)),
      ...(preview ? { preview } : {}),
    });
  } catch (err) {
    if (err instanceof InputValidationError) return send(res, 400, validationFailure(err.issues));
    if (err instanceof BodyError) return send(res, err.status, failure(err.message));
    if (err instanceof StorageUnavailableError) return sendApiError(res, storageUnavailableAnswer(err));
    if (err instanceof ApiError) return sendApiError(res, err);
    throw err;
  }
}

function sendApiError(res: ServerResponse, err: ApiError): void {
  const retryAfter = typeof err.details.retryAfter === 'number' ? err.details.retryAfter : null;
  send(
    res,
    err.httpStatus,
    { ...failure(err.message), code: err.code, ...(retryAfter !== null ? { retry_after: retryAfter } : {}) },
    retryAfter !== null ? { 'retry-after': String(retryAfter) } : {},
  );
}

/** The contract's reply for a job: PENDING (+ progress extras), SUCCESS (+ download_urls, one per image) or FAILURE. */
export function describe(job: Job, downloadUrls: readonly string[], queuePosition: number | null): Record<string, unknown> {
  switch (job.status) {
    case 'PENDING':
    case 'PROCESSING': {
      const total = job.progress?.totalSteps ?? job.params.numInferenceSteps;
      const step = job.progress?.step ?? 0;
      return {
        status: 'PENDING',
        id: job.id,
        state: job.status === 'PENDING' ? 'QUEUED' : 'PROCESSING',
        step,
        total_steps: total,
        progress: total > 0 ? Math.min(1, step / total) : 0,
        ...(queuePosition !== null ? { queue_position: queuePosition } : {}),
        seed: job.params.seed,
      };
    }
    case 'SUCCESS':
      return {
        status: 'SUCCESS',
        id: job.id,
        download_urls: downloadUrls,
        nsfw: job.images.map((i) => i.nsfw ?? false),
        seed: job.params.seed,
      };
    case 'FAILURE':
      return { status: 'FAILURE', id: job.id, error: job.error?.message ?? 'the job failed', code: job.error?.code ?? 'INTERNAL' };
    case 'CANCELED':
      return { status: 'FAILURE', id: job.id, error: 'the job was canceled', code: 'CANCELED' };
  }
}

function failure(error: string) {
  return { status: 'FAILURE', error };
}

function validationFailure(issues: FieldIssue[]) {
  const errors = issues.map((i) => ({ field: toRestFieldName(i.path), code: i.code, message: i.message }));
  return { status: 'FAILURE', error: errors.map((e) => `${e.field}: ${e.message}`).join('; '), errors };
}

class BodyError extends Error {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
  }
}

async function readBody(req: IncomingMessage, limit: number): Promise<string> {
  const declared = Number(req.headers['content-length'] ?? 0);
  // Refused before reading a byte when the client says how much it will send.
  if (declared > limit) throw new BodyError(413, `the request body is larger than ${limit} bytes`);
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req) {
    size += (chunk as Buffer).length;
    if (size > limit) throw new BodyError(413, `the request body is larger than ${limit} bytes`);
    chunks.push(chunk as Buffer);
  }
  return Buffer.concat(chunks).toString('utf8');
}

/**
 * JSON whatever the content type says: clients such as Python's requests with
 * data=json.dumps(...) send JSON text with no JSON content type, or form-encoded.
 */
function parseBody(text: string): unknown {
  const trimmed = text.trim();
  if (!trimmed) throw new BodyError(400, 'the request body is empty: send the request as a JSON object');
  try {
    return JSON.parse(trimmed);
  } catch {
    // A JSON document sent as form data arrives as its own single key.
    const params = [...new URLSearchParams(trimmed).keys()];
    if (params.length === 1) {
      try {
        return JSON.parse(params[0]!);
      } catch {
        /* fall through */
      }
    }
    throw new BodyError(400, 'the request body is not JSON: send the request as a JSON object');
  }
}

function decodePathSegment(segment: string): string | null {
  try {
    return decodeURIComponent(segment);
  } catch {
    return null;
  }
}

function headerValue(req: IncomingMessage, name: string): string | null {
  const value = req.headers[name.toLowerCase()];
  return Array.isArray(value) ? (value[0] ?? null) : (value ?? null);
}

function send(res: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): void {
  const text = JSON.stringify(body);
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text), ...headers });
  res.end(text);
}
