import { parentPort, workerData } from 'node:worker_threads';
import type * as ort from 'onnxruntime-node';
import { Checkpoint } from '../../diffusion/checkpoint.js';
import { blackPng, imageToTensor, maskToTensor, tensorToPng } from '../../diffusion/image-codec.js';
import { generate, GenerationCanceled } from '../../diffusion/pipeline.js';
import { InvalidRequestError } from '../../diffusion/request-error.js';
import { checkImages } from '../../diffusion/safety.js';
import { TokenLimitError } from '../../diffusion/tokenizer/clip-tokenizer.js';
import type { PreviewPixels } from '../../diffusion/preview.js';
import { PREVIEW_INTERVAL_MS, type FromWorker, type GenerateMessage, type ToWorker, type ThreadSettings } from './thread-protocol.js';

/**
 * The local engine's generation thread: owns the ONNX Runtime sessions (loaded lazily, least
 * recently used released) and runs one generation at a time per message.
 */

const settings = workerData as ThreadSettings;
const sessionOptions: ort.InferenceSession.SessionOptions = {
  // auto: CUDA when its libraries and a GPU are there, else the CPU (see createSession).
  executionProviders: { cpu: ['cpu'], cuda: ['cuda'], auto: ['cuda', 'cpu'] }[settings.executionProvider],
  ...(settings.intraOpThreads > 0 ? { intraOpNumThreads: settings.intraOpThreads } : {}),
};
const loaded = new Map<string, Promise<Checkpoint>>();
/** Generations using each loaded checkpoint: one evicted meanwhile is released after the last. */
const users = new Map<Promise<Checkpoint>, number>();
const evicted = new Set<Promise<Checkpoint>>();
const aborts = new Map<string, AbortController>();
/** Jobs someone watches: previews until this time. */
const previewUntil = new Map<string, number>();
const port = parentPort!;
const post = (message: FromWorker, transfer: ArrayBuffer[] = []) => port.postMessage(message, transfer);

function checkpoint(dir: string): Promise<Checkpoint> {
  let loading = loaded.get(dir);
  if (loading) {
    loaded.delete(dir);
    loaded.set(dir, loading);
    return loading;
  }
  loading = Checkpoint.load(dir, sessionOptions);
  loading.catch(() => loaded.delete(dir));
  loaded.set(dir, loading);
  while (loaded.size > settings.maxLoadedCheckpoints) {
    const [oldest, promise] = loaded.entries().next().value as [string, Promise<Checkpoint>];
    loaded.delete(oldest);
    // A describe (an upload's check) may load another checkpoint while a generation runs: the
    // running one keeps its sessions until it ends.
    if (users.has(promise)) evicted.add(promise);
    else releaseCheckpoint(promise);
  }
  return loading;
}

function releaseCheckpoint(promise: Promise<Checkpoint>): void {
  void promise.then(
    (c) => c.release(),
    () => undefined,
  );
}

/** Runs work on a checkpoint, which stays loaded until the work ends. */
async function using<T>(dir: string, work: (ckpt: Checkpoint) => Promise<T>): Promise<T> {
  const loading = checkpoint(dir);
  users.set(loading, (users.get(loading) ?? 0) + 1);
  try {
    return await work(await loading);
  } finally {
    const left = users.get(loading)! - 1;
    if (left > 0) users.set(loading, left);
    else {
      users.delete(loading);
      if (evicted.delete(loading)) releaseCheckpoint(loading);
    }
  }
}

async function run(msg: GenerateMessage): Promise<void> {
  const abort = new AbortController();
  aborts.set(msg.jobId, abort);
  try {
    const out = await using(msg.checkpointDir, async (ckpt) => {
      const initImage = msg.initImage
        ? await decoded('initImage', imageToTensor(Buffer.from(msg.initImage), msg.width, msg.height))
        : undefined;
      const mask = msg.maskImage ? await decoded('maskImage', maskToTensor(Buffer.from(msg.maskImage), msg.width, msg.height)) : undefined;
      let lastPreviewAt = 0;
      let preview: PreviewPixels | undefined;
      const images = await generate(ckpt, {
        ...msg,
        initImage,
        mask,
        signal: abort.signal,
        preview: {
          due: () => {
            const now = Date.now();
            return now < (previewUntil.get(msg.jobId) ?? 0) && now - lastPreviewAt >= PREVIEW_INTERVAL_MS;
          },
          show: (pixels) => {
            lastPreviewAt = Date.now();
            preview = pixels;
          },
        },
        onStep: (step, total) => {
          // The preview travels with the step it shows, its pixels moved rather than copied.
          post({ type: 'progress', jobId: msg.jobId, step, total, preview }, preview ? [preview.rgb.buffer as ArrayBuffer] : []);
          preview = undefined;
        },
      });
      const flags = msg.safetyChecker ? await checkImages(ckpt, images, msg.samples, msg.width, msg.height) : null;
      const pngs: { data: Uint8Array; nsfw: boolean | null }[] = [];
      for (let i = 0; i < msg.samples; i++) {
        const nsfw = flags ? flags[i]! : null;
        const png = nsfw ? await blackPng(msg.width, msg.height) : await tensorToPng(images, i, msg.width, msg.height);
        pngs.push({ data: new Uint8Array(png), nsfw });
      }
      return pngs;
    });
    post(
      { type: 'done', jobId: msg.jobId, images: out },
      out.map((o) => o.data.buffer as ArrayBuffer),
    );
  } catch (err) {
    if (err instanceof GenerationCanceled) {
      post({ type: 'canceled', jobId: msg.jobId });
      return;
    }
    // Every failure's reason goes back: the engine shows it (cleaned) to the job's owner.
    const fault = err instanceof InvalidRequestError || err instanceof TokenLimitError ? 'request' : 'engine';
    post({ type: 'failed', jobId: msg.jobId, message: err instanceof Error ? err.message : String(err), fault });
  } finally {
    aborts.delete(msg.jobId);
    previewUntil.delete(msg.jobId);
  }
}

/** An input image sharp cannot decode is the request's fault, whatever sharp's words for it. */
async function decoded<T>(field: string, decoding: Promise<T>): Promise<T> {
  try {
    return await decoding;
  } catch (err) {
    throw new InvalidRequestError(`${field}: the image cannot be decoded: ${(err as Error).message}`);
  }
}

port.on('message', (msg: ToWorker) => {
  switch (msg.type) {
    case 'generate':
      void run(msg);
      break;
    case 'cancel':
      aborts.get(msg.jobId)?.abort();
      break;
    case 'preview':
      if (aborts.has(msg.jobId)) previewUntil.set(msg.jobId, msg.until); // running here (not finished)
      break;
    case 'describe':
      checkpoint(msg.checkpointDir).then(
        (c) => post({ type: 'described', requestId: msg.requestId, hiddenSize: c.hiddenSize, inpainting: c.inpainting }),
        (err: unknown) => post({ type: 'described', requestId: msg.requestId, error: (err as Error).message }),
      );
      break;
  }
});
