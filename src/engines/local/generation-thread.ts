import { Worker } from 'node:worker_threads';
import type { Logger } from 'pino';
import { GenerationCanceled } from '../../diffusion/pipeline.js';
import type { PreviewPixels } from '../../diffusion/preview.js';
import type { FromWorker, GenerateMessage, ThreadSettings } from './thread-protocol.js';

/** A generation the worker failed, with the reason and whose fault it was (the request's or the engine's). */
export class GenerationFailed extends Error {
  constructor(
    message: string,
    readonly fault: 'request' | 'engine',
  ) {
    super(message);
    this.name = 'GenerationFailed';
  }
}

interface PendingJob {
  onProgress: (step: number, total: number, preview?: PreviewPixels) => void;
  resolve: (images: { data: Buffer; nsfw: boolean | null }[]) => void;
  reject: (err: Error) => void;
}

/**
 * The main thread's side of the generation thread: starts it on first use, routes its messages,
 * and fails every job in flight (then starts afresh on the next one) if the worker dies.
 */
export class GenerationThread {
  private worker: Worker | null = null;
  private readonly jobs = new Map<string, PendingJob>();
  private readonly describes = new Map<
    number,
    { resolve: (v: { hiddenSize: number; inpainting: boolean }) => void; reject: (e: Error) => void }
  >();
  private nextRequest = 1;

  constructor(
    private readonly settings: ThreadSettings,
    private readonly logger: Logger,
  ) {}

  generate(msg: GenerateMessage, onProgress: PendingJob['onProgress']): Promise<{ data: Buffer; nsfw: boolean | null }[]> {
    return new Promise((resolve, reject) => {
      this.jobs.set(msg.jobId, { onProgress, resolve, reject });
      this.start().postMessage(msg);
    });
  }

  cancel(jobId: string): void {
    this.worker?.postMessage({ type: 'cancel', jobId });
  }

  /** Previews of a job this thread runs, until this time (ms since the epoch). */
  previewUntil(jobId: string, until: number): void {
    this.worker?.postMessage({ type: 'preview', jobId, until });
  }

  describe(checkpointDir: string): Promise<{ hiddenSize: number; inpainting: boolean }> {
    const requestId = this.nextRequest++;
    return new Promise((resolve, reject) => {
      this.describes.set(requestId, { resolve, reject });
      this.start().postMessage({ type: 'describe', requestId, checkpointDir });
    });
  }

  async close(): Promise<void> {
    const worker = this.worker;
    this.worker = null;
    if (worker) await worker.terminate();
  }

  private start(): Worker {
    if (this.worker) return this.worker;
    // From TypeScript sources (npm start, tests) a small .mjs entry loads the worker through tsx.
    const entry = import.meta.url.endsWith('.ts') ? './thread-bootstrap.mjs' : './thread-main.js';
    const worker = new Worker(new URL(entry, import.meta.url), { workerData: this.settings });
    worker.on('message', (msg: FromWorker) => this.onMessage(msg));
    worker.on('error', (err) => this.logger.error({ err }, 'generation thread failed'));
    worker.on('exit', (code) => {
      if (this.worker === worker) this.worker = null;
      const failure = new GenerationFailed(`the generation thread stopped (exit code ${code})`, 'engine');
      for (const job of this.jobs.values()) job.reject(failure);
      for (const d of this.describes.values()) d.reject(failure);
      this.jobs.clear();
      this.describes.clear();
    });
    this.worker = worker;
    return worker;
  }

  private onMessage(msg: FromWorker): void {
    if (msg.type === 'described') {
      const d = this.describes.get(msg.requestId);
      this.describes.delete(msg.requestId);
      if (msg.error || msg.hiddenSize === undefined) d?.reject(new Error(msg.error ?? 'no description'));
      else d?.resolve({ hiddenSize: msg.hiddenSize, inpainting: msg.inpainting ?? false });
      return;
    }
    const job = this.jobs.get(msg.jobId);
    if (!job) return;
    switch (msg.type) {
      case 'progress':
        job.onProgress(msg.step, msg.total, msg.preview);
        return;
      case 'done':
        job.resolve(msg.images.map((i) => ({ data: Buffer.from(i.data), nsfw: i.nsfw })));
        break;
      case 'failed':
        job.reject(new GenerationFailed(msg.message, msg.fault));
        break;
      case 'canceled':
        job.reject(new GenerationCanceled());
        break;
    }
    this.jobs.delete(msg.jobId);
  }
}
