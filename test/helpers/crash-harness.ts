/**
 * Helpers for test/crash-recovery.test.ts: a server process that is killed with SIGKILL and
 * started again on the same PORT and DATA_DIR, a client that keeps submitting jobs (GraphQL and
 * REST, some with idempotency keys and retried like a careful client would), a latency-adding
 * proxy in front of the fake upstream that also tells when the server is in the middle of an
 * upstream call, and a file-system trigger for "the server is writing an image right now".
 */
import { watch } from 'node:fs';
import { createServer, request as httpRequest, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { TypedDocumentNode } from '@graphql-typed-document-node/core';
import { print, type ExecutionResult } from 'graphql';
import {
  Image2ImageDocument,
  InpaintingDocument,
  Text2ImageDocument,
  type Image2ImageInput,
  type InpaintingInput,
  type Text2ImageInput,
} from '../../src/client/generated/graphql.js';
import { startServerProcess, type ServerProcess } from './server-process.js';

export const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

/** A small seeded PRNG (mulberry32), so a run's choices can be replayed with its printed seed. */
export function seededRandom(seed: number) {
  let a = seed >>> 0;
  const next = () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  const int = (lo: number, hi: number) => lo + Math.floor(next() * (hi - lo + 1));
  const pick = <T>(items: readonly T[]): T => items[Math.floor(next() * items.length)]!;
  const shuffle = <T>(items: readonly T[]): T[] => {
    const out = [...items];
    for (let i = out.length - 1; i > 0; i--) {
      const j = Math.floor(next() * (i + 1));
      [out[i], out[j]] = [out[j]!, out[i]!];
    }
    return out;
  };
  return { next, int, pick, shuffle, chance: (p: number) => next() < p };
}
export type Random = ReturnType<typeof seededRandom>;

/** A TCP port that was free a moment ago (the server is then started on it, again and again). */
export async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

// ---------------------------------------------------------------------------------------------
// The server process, killed and restarted

export interface Incarnation {
  n: number;
  proc: ServerProcess;
  startedAt: number;
  listeningAt: number | null;
  killedAt: number | null;
  /** Set before we send a signal: an exit without it is a crash of the server itself. */
  stoppedByTest: boolean;
  exitCode: number | null | undefined;
  signal: NodeJS.Signals | null | undefined;
}

export class CrashableServer {
  readonly url: string;
  key = '';
  readonly incarnations: Incarnation[] = [];
  /** Exits the test did not cause: the server crashed on its own (or failed to start). */
  readonly unexpectedExits: string[] = [];
  private current: Incarnation | null = null;

  constructor(
    readonly env: Record<string, string>,
    private readonly startTimeoutMs: number,
  ) {
    this.url = `http://127.0.0.1:${env.PORT}`;
  }

  get up(): boolean {
    return this.current !== null;
  }

  /** 1 for the first start, +1 for each restart. */
  get incarnation(): number {
    return this.incarnations.length;
  }

  /** Milliseconds the current incarnation has been listening. */
  listeningFor(): number {
    return this.current?.listeningAt ? Date.now() - this.current.listeningAt : 0;
  }

  /** Starts a process on the fixed PORT and DATA_DIR; resolves once it listens. Returns ms to listen. */
  async start(): Promise<number> {
    const proc = startServerProcess(this.env, this.startTimeoutMs);
    const inc: Incarnation = {
      n: this.incarnations.length + 1,
      proc,
      startedAt: Date.now(),
      listeningAt: null,
      killedAt: null,
      stoppedByTest: false,
      exitCode: undefined,
      signal: undefined,
    };
    this.incarnations.push(inc);
    proc.child.once('exit', (code, signal) => {
      inc.exitCode = code;
      inc.signal = signal;
      if (!inc.stoppedByTest) {
        this.unexpectedExits.push(
          `incarnation ${inc.n} exited by itself (code ${code}, signal ${signal}); its output ends:\n${tail(proc.output(), 3000)}`,
        );
        if (this.current === inc) this.current = null;
      }
    });
    const url = await proc.url;
    if (url !== this.url) throw new Error(`incarnation ${inc.n} listens on ${url}, not on ${this.url}`);
    if (!this.key) {
      const key = proc.printedKey();
      if (!key) throw new Error(`the first start printed no API key:\n${proc.output()}`);
      this.key = key;
    }
    inc.listeningAt = Date.now();
    this.current = inc;
    return inc.listeningAt - inc.startedAt;
  }

  /**
   * SIGKILL: no handler runs, nothing is flushed; the kernel closes its sockets and files. With
   * termFirstMs, SIGTERM goes first and SIGKILL that long later (a supervisor losing patience in
   * the middle of a graceful stop); returns how the process ended.
   */
  async kill(options: { termFirstMs?: number } = {}): Promise<string> {
    const inc = this.current;
    if (!inc) return 'not running';
    this.current = null;
    inc.stoppedByTest = true;
    inc.killedAt = Date.now();
    if (options.termFirstMs !== undefined) {
      inc.proc.child.kill('SIGTERM');
      const done = await Promise.race([inc.proc.exited.then(() => true), sleep(options.termFirstMs).then(() => false)]);
      if (done) return `stopped gracefully within ${options.termFirstMs} ms (exit ${inc.exitCode})`;
    }
    inc.proc.child.kill('SIGKILL');
    await inc.proc.exited;
    return options.termFirstMs !== undefined ? `SIGTERM, then SIGKILL ${options.termFirstMs} ms later` : 'SIGKILL';
  }

  /** SIGTERM, the operator's graceful stop; resolves to the exit code, or 'timeout'. */
  async stopGracefully(timeoutMs = 20_000): Promise<number | null | 'timeout'> {
    const inc = this.current;
    if (!inc) return null;
    this.current = null;
    inc.stoppedByTest = true;
    inc.proc.child.kill('SIGTERM');
    let timer: NodeJS.Timeout | undefined;
    const result = await Promise.race([
      inc.proc.exited,
      new Promise<'timeout'>((resolve) => (timer = setTimeout(() => resolve('timeout'), timeoutMs))),
    ]);
    clearTimeout(timer);
    if (result === 'timeout') {
      inc.proc.child.kill('SIGKILL');
      await inc.proc.exited;
    }
    return result;
  }

  /** For afterAll: no process may outlive the test. */
  async killAll(): Promise<void> {
    for (const inc of this.incarnations) {
      if (inc.proc.child.exitCode === null && inc.proc.child.signalCode === null) {
        inc.stoppedByTest = true;
        inc.proc.child.kill('SIGKILL');
        await inc.proc.exited;
      }
    }
    this.current = null;
  }

  /** Log lines at level error (50) or above from every incarnation, deduplicated by message. */
  errorLogs(): Map<string, number> {
    const counts = new Map<string, number>();
    for (const inc of this.incarnations) {
      for (const line of inc.proc.output().split('\n')) {
        if (!line.startsWith('{')) continue;
        try {
          const entry = JSON.parse(line) as { level?: number; msg?: string; err?: { message?: string } };
          if ((entry.level ?? 0) < 50) continue;
          const key = `${entry.msg ?? '?'}${entry.err?.message ? `: ${entry.err.message}` : ''}`;
          counts.set(key, (counts.get(key) ?? 0) + 1);
        } catch {
          // not a log line
        }
      }
    }
    return counts;
  }

  outputTail(chars = 4000): string {
    return this.incarnations.map((inc) => `--- incarnation ${inc.n} ---\n${tail(inc.proc.output(), chars)}`).join('\n');
  }
}

function tail(text: string, chars: number): string {
  return text.length > chars ? `…${text.slice(-chars)}` : text;
}

// ---------------------------------------------------------------------------------------------
// Talking to the server with time limits (a killed server must not hang the client)

export async function gqlTimed<R, V>(
  baseUrl: string,
  doc: TypedDocumentNode<R, V>,
  variables: V,
  key: string,
  options: { timeoutMs?: number; headers?: Record<string, string> } = {},
): Promise<{ httpStatus: number; body: ExecutionResult<R> }> {
  const res = await fetch(`${baseUrl}/graphql`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', 'api-key': key, ...options.headers },
    body: JSON.stringify({ query: print(doc), variables }),
    signal: AbortSignal.timeout(options.timeoutMs ?? 15_000),
  });
  const text = await res.text();
  let body: ExecutionResult<R>;
  try {
    body = JSON.parse(text) as ExecutionResult<R>;
  } catch {
    body = { errors: [{ message: `HTTP ${res.status}, not JSON: ${text.slice(0, 200)}` }] } as unknown as ExecutionResult<R>;
  }
  return { httpStatus: res.status, body };
}

export type Mode = 'text2image' | 'image2image' | 'inpainting';

/** A generation request in GraphQL's camelCase; REST sends the same in the contract's snake_case. */
export interface JobRequest {
  mode: Mode;
  via: 'graphql' | 'rest';
  input: Record<string, unknown> & { samples: number; width: number; height: number };
  /** Set on requests of the retrying client: sent as a header or (GraphQL) the input field. */
  idempotencyKey?: string;
  keyVia?: 'header' | 'input';
}

export interface AcceptedJob {
  id: string;
  mode: Mode;
  via: 'graphql' | 'rest';
  samples: number;
  width: number;
  height: number;
  /** The incarnation that answered, and how many attempts the request took. */
  incarnation: number;
  attempts: number;
  idempotencyKey: string | undefined;
  /** The status in the answer: PENDING for a new job; a replayed key may answer a later state. */
  answeredStatus: string;
  at: number;
}

export type Outcome = { kind: 'accepted'; job: AcceptedJob } | { kind: 'refused'; why: string } | { kind: 'down'; why: string };

const SNAKE: Record<string, string> = {
  modelId: 'model_id',
  negativePrompt: 'negative_prompt',
  numInferenceSteps: 'num_inference_steps',
  guidanceScale: 'guidance_scale',
  safetyChecker: 'safety_checker',
  initImage: 'init_image',
  maskImage: 'mask_image',
};

/**
 * Submits jobs in a loop until stopped. Every answered create (a job id) is recorded; a request
 * that fails because the server is down is not. Requests with an idempotency key are retried
 * after a network failure until they get an answer (as a careful client would), so a create the
 * server committed but could not answer before it died is found again under its key.
 */
export class Submitter {
  readonly accepted: AcceptedJob[] = [];
  readonly stats = { requests: 0, accepted: 0, replayedNonPending: 0, refused: 0, down: 0, retried: 0, gaveUp: 0 };
  readonly refusals = new Map<string, number>();
  /** Idempotency keys whose request never got an answer (the client gave up). */
  readonly abandonedKeys: string[] = [];
  private stopped = false;
  private readonly loops: Promise<void>[] = [];
  /** Requests under way (the loops' and single ones, such as a burst's), until answered or abandoned. */
  private readonly inHand = new Set<Promise<Outcome>>();

  constructor(
    private readonly server: CrashableServer,
    private readonly nextRequest: () => JobRequest,
  ) {}

  /** Starts `clients` loops, each pausing `pause()` ms between its requests. */
  start(clients: number, pause: () => number): void {
    for (let i = 0; i < clients; i++) this.loops.push(this.loop(pause));
  }

  /** Stops new submissions; waits for the loops and every request still in hand (retries included) to end. */
  async stop(): Promise<void> {
    this.stopped = true;
    await Promise.all(this.loops);
    while (this.inHand.size > 0) await Promise.all([...this.inHand]);
  }

  /** One request; with an idempotency key, retried through outages (bounded) until answered. */
  submit(req: JobRequest = this.nextRequest()): Promise<Outcome> {
    const promise = this.submitWithRetries(req);
    this.inHand.add(promise);
    void promise.finally(() => this.inHand.delete(promise));
    return promise;
  }

  private async submitWithRetries(req: JobRequest): Promise<Outcome> {
    const deadline = Date.now() + 20_000;
    for (let attempt = 1; ; attempt++) {
      const outcome = await this.send(req, attempt);
      if (outcome.kind !== 'down' || !req.idempotencyKey) return outcome;
      if (Date.now() > deadline) {
        this.stats.gaveUp++;
        this.abandonedKeys.push(req.idempotencyKey);
        return outcome;
      }
      this.stats.retried++;
      await sleep(100);
    }
  }

  private async loop(pause: () => number): Promise<void> {
    while (!this.stopped) {
      const outcome = await this.submit();
      await sleep(outcome.kind === 'down' ? 100 : pause());
    }
  }

  private async send(req: JobRequest, attempt: number): Promise<Outcome> {
    this.stats.requests++;
    const incarnation = this.server.incarnation;
    let answer: { id: string; status: string } | null = null;
    let refusal = '';
    try {
      if (req.via === 'graphql') {
        const input = { ...req.input, ...(req.idempotencyKey && req.keyVia === 'input' ? { idempotencyKey: req.idempotencyKey } : {}) };
        const headers: Record<string, string> =
          req.idempotencyKey && req.keyVia !== 'input' ? { 'idempotency-key': req.idempotencyKey } : {};
        let res: { httpStatus: number; body: ExecutionResult<Record<string, { id: string; status: string }>> };
        switch (req.mode) {
          case 'text2image':
            res = await gqlTimed(this.server.url, Text2ImageDocument, { input: input as Text2ImageInput }, this.server.key, { headers });
            break;
          case 'image2image':
            res = await gqlTimed(this.server.url, Image2ImageDocument, { input: input as Image2ImageInput }, this.server.key, { headers });
            break;
          case 'inpainting':
            res = await gqlTimed(this.server.url, InpaintingDocument, { input: input as InpaintingInput }, this.server.key, { headers });
            break;
        }
        const job = res.body.data?.[req.mode];
        if (job?.id) answer = job;
        else
          refusal = `graphql ${res.httpStatus} ${res.body.errors?.map((e) => `${(e.extensions?.code as string) ?? ''} ${e.message}`).join('; ') ?? ''}`;
      } else {
        const body = Object.fromEntries(Object.entries(req.input).map(([k, v]) => [SNAKE[k] ?? k, v]));
        const res = await fetch(`${this.server.url}/sd/${req.mode}/v1`, {
          method: 'POST',
          headers: {
            'content-type': 'application/json',
            'api-key': this.server.key,
            ...(req.idempotencyKey ? { 'idempotency-key': req.idempotencyKey } : {}),
          },
          body: JSON.stringify(body),
          signal: AbortSignal.timeout(15_000),
        });
        const text = await res.text();
        let json: { status?: string; id?: string; error?: string; code?: string } = {};
        try {
          json = JSON.parse(text) as typeof json;
        } catch {
          // refused below
        }
        // The contract's REST reply: PENDING + id for a new job; a replayed key may answer SUCCESS/FAILURE + id.
        if (res.status === 200 && json.id && json.status) {
          answer = { id: json.id, status: json.status === 'PENDING' ? 'PENDING' : json.status };
        } else refusal = `rest ${res.status} ${json.code ?? ''} ${json.error ?? text.slice(0, 200)}`;
      }
    } catch (err) {
      this.stats.down++;
      const cause = (err as { cause?: { code?: string; message?: string } }).cause;
      return { kind: 'down', why: `${(err as Error).name}: ${cause?.code ?? cause?.message ?? (err as Error).message}` };
    }
    if (!answer) {
      this.stats.refused++;
      const why = refusal.replace(/[0-9a-f]{8}-[0-9a-f-]{27}/g, '<id>').slice(0, 300);
      this.refusals.set(why, (this.refusals.get(why) ?? 0) + 1);
      return { kind: 'refused', why };
    }
    if (answer.status !== 'PENDING') this.stats.replayedNonPending++;
    const job: AcceptedJob = {
      id: answer.id,
      mode: req.mode,
      via: req.via,
      samples: req.input.samples,
      width: req.input.width,
      height: req.input.height,
      incarnation,
      attempts: attempt,
      idempotencyKey: req.idempotencyKey,
      answeredStatus: answer.status,
      at: Date.now(),
    };
    this.stats.accepted++;
    this.accepted.push(job);
    return { kind: 'accepted', job };
  }
}

// ---------------------------------------------------------------------------------------------
// Triggers for kill moments

/**
 * Resolves with the name of the first file in `dir` that matches, as the kernel reports it
 * (inotify): a `.tmp` appearing means the image store is writing an image right now; a final
 * name appearing means it just renamed one into place (the job is not SUCCESS yet). Null on timeout.
 */
export function nextFileEvent(dir: string, match: (name: string) => boolean, timeoutMs: number): Promise<string | null> {
  return new Promise((resolve) => {
    const watcher = watch(dir, (_event, name) => {
      if (name && match(name.toString())) finish(name.toString());
    });
    const timer = setTimeout(() => finish(null), timeoutMs);
    function finish(name: string | null) {
      clearTimeout(timer);
      watcher.close();
      resolve(name);
    }
  });
}

export type UpstreamCall = 'submit' | 'status' | 'file' | 'other';
export type ProxyPhase = 'request' | 'replied';

/**
 * TEST PLUMBING: an HTTP proxy in front of the fake upstream that forwards every call at once
 * and delays its reply (so the server under test spends time waiting in submit, status and
 * download calls), rewrites the upstream's own address in replies (download_urls) to its own,
 * and tells listeners when a call arrives and when its reply has been sent.
 */
export class LatencyProxy {
  private server: Server | null = null;
  private port = 0;
  private readonly listeners = new Set<(kind: UpstreamCall, phase: ProxyPhase, path: string) => void>();
  readonly counts: Record<UpstreamCall, number> = { submit: 0, status: 0, file: 0, other: 0 };

  constructor(
    private readonly targetUrl: () => string,
    private readonly replyDelayMs: (kind: UpstreamCall) => number,
  ) {}

  get url(): string {
    return `http://127.0.0.1:${this.port}`;
  }

  async start(): Promise<string> {
    this.server = createServer((req, res) => void this.forward(req, res));
    await new Promise<void>((resolve) => this.server!.listen(0, '127.0.0.1', resolve));
    this.port = (this.server.address() as AddressInfo).port;
    return this.url;
  }

  async stop(): Promise<void> {
    const server = this.server;
    this.server = null;
    if (!server) return;
    server.closeAllConnections();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  }

  /** Resolves true at the next event of this kind and phase, false after timeoutMs. */
  next(kind: UpstreamCall, phase: ProxyPhase, timeoutMs: number): Promise<boolean> {
    return new Promise((resolve) => {
      const listener = (k: UpstreamCall, p: ProxyPhase) => {
        if (k === kind && p === phase) done(true);
      };
      const timer = setTimeout(() => done(false), timeoutMs);
      const done = (seen: boolean) => {
        clearTimeout(timer);
        this.listeners.delete(listener);
        resolve(seen);
      };
      this.listeners.add(listener);
    });
  }

  private emit(kind: UpstreamCall, phase: ProxyPhase, path: string): void {
    for (const listener of [...this.listeners]) listener(kind, phase, path);
  }

  private async forward(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const path = req.url ?? '/';
    const kind: UpstreamCall = /^\/sd\/[\w]+\/v1\/?$/.test(path)
      ? 'submit'
      : /\/status\//.test(path)
        ? 'status'
        : path.startsWith('/files/')
          ? 'file'
          : 'other';
    this.counts[kind]++;
    res.on('error', () => {});
    try {
      const chunks: Buffer[] = [];
      for await (const chunk of req) chunks.push(chunk as Buffer);
      this.emit(kind, 'request', path);
      const target = new URL(path, this.targetUrl());
      const headers = { ...req.headers, host: target.host };
      const upstream = await new Promise<{ status: number; headers: Record<string, string>; body: Buffer }>((resolve, reject) => {
        const out = httpRequest(target, { method: req.method, headers }, (reply) => {
          const parts: Buffer[] = [];
          reply.on('data', (d: Buffer) => parts.push(d));
          reply.on('end', () => {
            const h: Record<string, string> = {};
            for (const [name, value] of Object.entries(reply.headers)) if (typeof value === 'string') h[name] = value;
            resolve({ status: reply.statusCode ?? 502, headers: h, body: Buffer.concat(parts) });
          });
          reply.on('error', reject);
        });
        out.on('error', reject);
        out.end(Buffer.concat(chunks));
      });
      let body = upstream.body;
      if ((upstream.headers['content-type'] ?? '').includes('json')) {
        body = Buffer.from(body.toString('utf8').split(this.targetUrl()).join(this.url));
      }
      await sleep(this.replyDelayMs(kind));
      if (res.destroyed || req.socket.destroyed) return; // the server under test died meanwhile
      delete upstream.headers['transfer-encoding'];
      res.writeHead(upstream.status, { ...upstream.headers, 'content-length': String(body.length) });
      res.end(body, () => this.emit(kind, 'replied', path));
    } catch (err) {
      if (!res.headersSent && !res.destroyed) res.writeHead(502, { 'content-type': 'application/json' });
      if (!res.destroyed) res.end(JSON.stringify({ status: 'FAILURE', error: `proxy: ${(err as Error).message}` }));
    }
  }
}
