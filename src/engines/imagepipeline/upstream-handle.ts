/**
 * The handle a job keeps for the remote engine: the upstream it was submitted to and that
 * upstream's job id. Persisted with the job, so a server restarted with another IMAGEPIPELINE_URL
 * tells the jobs of its previous upstream (they end ENGINE_LOST_JOB, naming it) instead of asking
 * the new one about ids it never gave.
 *
 * Stored as {"w": url, "id": id}: the format of the gateway that spread jobs over several
 * upstreams ("w" for worker), kept so that its handles, and those written since, read alike.
 */
export interface UpstreamHandle {
  /** The upstream's base URL, as configured in IMAGEPIPELINE_URL when the job was submitted. */
  upstream: string;
  id: string;
}

export function encodeUpstreamHandle(handle: UpstreamHandle): string {
  return JSON.stringify({ w: handle.upstream, id: handle.id });
}

/**
 * Reads a handle. A plain id (written before handles named their upstream) belongs to the
 * configured upstream.
 */
export function decodeUpstreamHandle(handle: string, configured: string): UpstreamHandle {
  if (handle.startsWith('{')) {
    try {
      const parsed = JSON.parse(handle) as { w?: unknown; id?: unknown };
      if (typeof parsed.w === 'string' && typeof parsed.id === 'string') return { upstream: parsed.w, id: parsed.id };
    } catch {
      // Not one of ours: treat it as a plain id below.
    }
  }
  return { upstream: configured, id: handle };
}

/** Whether two base URLs name the same upstream (host case, a default port, a trailing slash aside). */
export function sameUpstream(a: string, b: string): boolean {
  return normalize(a) === normalize(b);
}

function normalize(url: string): string {
  try {
    return new URL(url).href.replace(/\/+$/, '');
  } catch {
    return url.replace(/\/+$/, '');
  }
}
