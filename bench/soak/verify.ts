import { JobDocument, JobsDocument, type JobStatus } from '../../src/client/generated/graphql.js';
import { sleep } from '../lib/load.js';
import { TERMINAL, type JobRec } from './ledger.js';
import type { LoadContext } from './load.js';
import { fmt } from './report.js';

/**
 * The end of the soak. After the load stops, every accepted job must become terminal within the
 * drain deadline; then each is read back under its key: not found, not terminal, or SUCCESS with
 * an image missing (fewer than `samples`, or a download that is not HTTP 200 with PNG bytes)
 * counts as LOST. What clients were told along the way must agree with the stored state, and
 * another key must not see the job.
 */

/** Unfinished jobs the server lists, all keys (a lower bound when a key has more than 100). */
async function unfinished({ api, keys }: LoadContext): Promise<number> {
  let n = 0;
  for (const key of keys) {
    const r = await api.gql(key, JobsDocument, { first: 100, filter: { status: ['PENDING', 'PROCESSING'] as JobStatus[] } });
    if (r.transport || r.error || !r.data) return NaN;
    n += r.data.jobs.edges.length;
  }
  return n;
}

/**
 * Waits until the server lists no unfinished job (or the deadline, or the server is gone), then
 * for the load loops and the follow-ups, which finish on their own once their jobs have ended.
 */
export async function drain(ctx: LoadContext, loops: Promise<void>, serverGone: () => boolean, log: (line: string) => void) {
  const { control, ledger } = ctx;
  const drainStart = performance.now();
  let drained = false;
  let lastReport = 0;
  while (Date.now() < control.drainDeadline && !serverGone()) {
    const left = await unfinished(ctx);
    if (left === 0) {
      drained = true;
      break;
    }
    if (performance.now() - lastReport > 15_000) {
      log(`  drain: ${fmt(left)} unfinished`);
      lastReport = performance.now();
    }
    await sleep(1_000);
  }
  await loops;
  const settleUntil = Date.now() + 30_000;
  while (control.followUps.size > 0 && Date.now() < Math.min(settleUntil, control.drainDeadline)) await sleep(200);
  const drainMs = performance.now() - drainStart;
  if (control.followUps.size > 0) ledger.count('follow-ups still running after the drain', control.followUps.size);
  control.drainDeadline = 0; // anything still waiting gives up now
  await Promise.race([Promise.all([...control.followUps]), sleep(5_000)]);
  return { drained, drainMs };
}

export interface Verification {
  lost: number;
  lostSamples: string[];
  images: number;
  imageBytes: number;
}

export async function verify(ctx: LoadContext): Promise<Verification> {
  const { api, ledger, keys } = ctx;
  let lost = 0;
  let images = 0;
  let imageBytes = 0;
  const lostSamples: string[] = [];
  const lose = (why: string, rec: JobRec) => {
    lost++;
    ledger.count(`LOST: ${why}`);
    if (lostSamples.length < 10) lostSamples.push(`${why}: ${rec.id} (${rec.via} ${rec.mode}, key ${rec.key})`);
  };
  const recs = [...ledger.jobs.values()];
  let next = 0;
  const worker = async () => {
    while (next < recs.length) {
      const rec = recs[next++]!;
      const r = await api.gql(keys[rec.key]!, JobDocument, { id: rec.id });
      if (r.transport || r.error) {
        if (r.transport) ledger.error(r.transport, false, 'verify');
        else ledger.gqlError(r.error!, new Set(), 'verify');
        lose('could not be read', rec);
        continue;
      }
      const job = r.data?.job;
      if (!job) {
        lose('not found', rec);
        continue;
      }
      rec.final = job;
      if (!TERMINAL.has(job.status)) {
        lose(`still ${job.status} after the drain`, rec);
        continue;
      }
      if (job.status === 'SUCCESS') {
        if (job.images.length !== rec.samples || job.downloadUrls.length !== rec.samples) {
          lose(`SUCCESS with ${job.images.length} images of ${rec.samples}`, rec);
          continue;
        }
        let missing = 0;
        for (const u of job.downloadUrls) {
          const bytes = await api.download(u);
          if (bytes > 0) {
            images++;
            imageBytes += bytes;
          } else missing++;
        }
        if (missing) lose('SUCCESS with an image that cannot be downloaded', rec);
      }
      // Consistency of what clients were told along the way.
      if (rec.cancelAnswered === 'CANCELED' && job.status !== 'CANCELED')
        ledger.problem('cancelJob answered CANCELED but the job ended otherwise', `${rec.id} ${job.status}`);
      if (rec.subscriptionFinal && rec.subscriptionFinal !== job.status)
        ledger.problem('subscription final state differs from the stored one', `${rec.id} ${rec.subscriptionFinal} vs ${job.status}`);
      if (rec.restFinal && rec.restFinal !== job.status)
        ledger.problem('REST final status differs from the stored one', `${rec.id} ${rec.restFinal} vs ${job.status}`);
      if (
        rec.expectImageUnavailable &&
        (job.status !== 'FAILURE' || job.error?.code !== 'IMAGE_UNAVAILABLE') &&
        job.status !== 'CANCELED'
      ) {
        ledger.problem('a loopback initImage did not fail IMAGE_UNAVAILABLE', `${rec.id} ${job.status} ${job.error?.code}`);
      }
      if (job.status === 'FAILURE' && !rec.expectImageUnavailable)
        ledger.problem(`job FAILURE ${job.error?.code}`, `${rec.id}: ${job.error?.message}`);
    }
  };
  await Promise.all(Array.from({ length: 8 }, worker));
  await checkIsolation(ctx, recs);
  return { lost, lostSamples, images, imageBytes };
}

/** Isolation, on a sample: another key sees nothing of these jobs (GraphQL null, REST 404). */
async function checkIsolation({ api, ledger, keys }: LoadContext, recs: JobRec[]) {
  for (const rec of recs.filter((_, i) => i % 20 === 0).slice(0, 100)) {
    const other = (rec.key + 1) % keys.length;
    const r = await api.gql(keys[other]!, JobDocument, { id: rec.id });
    if (r.transport) ledger.error(r.transport, false, 'isolation check');
    const st = await api.http('GET', `/sd/${rec.mode}/v1/status/${rec.id}`, keys[other]!).catch((err: unknown) => {
      ledger.error(`REST network ${(err as { code?: string }).code ?? String(err)}`, false, 'isolation check');
      return { status: 404 };
    });
    if (r.data?.job || st.status !== 404)
      ledger.problem("another key's job was visible", `${rec.id}: GraphQL ${JSON.stringify(r.data?.job?.id ?? null)}, REST ${st.status}`);
    ledger.count('isolation checks (GraphQL + REST)');
  }
}
