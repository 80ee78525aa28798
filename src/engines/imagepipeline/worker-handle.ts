/**
 * The handle a job keeps for a remote engine: which worker holds it and that worker's job id.
 * Persisted with the job, so a restarted gateway still polls the right worker.
 */
export interface WorkerHandle {
  /** The worker's base URL, as configured in IMAGEPIPELINE_URL. */
  worker: string;
  id: string;
}

export function encodeWorkerHandle(handle: WorkerHandle): string {
  return JSON.stringify({ w: handle.worker, id: handle.id });
}

/**
 * Reads a handle. A plain id (written before gateways existed, when there was one upstream)
 * belongs to the first configured worker.
 */
export function decodeWorkerHandle(handle: string, defaultWorker: string): WorkerHandle {
  if (handle.startsWith('{')) {
    try {
      const parsed = JSON.parse(handle) as { w?: unknown; id?: unknown };
      if (typeof parsed.w === 'string' && typeof parsed.id === 'string') return { worker: parsed.w, id: parsed.id };
    } catch {
      // Not one of ours: treat it as a plain id below.
    }
  }
  return { worker: defaultWorker, id: handle };
}
