import { sleep } from '../../lib/load.js';
import { chance, invalidInput, pick, rand, toRest, validInput, type Mode } from '../inputs.js';
import { limitKind } from '../ledger.js';
import type { LoadContext } from '../load.js';
import { parseJson } from './http.js';
import { subscribeToEnd } from './subscriptions.js';

/**
 * A key's REST client (the contract's API): POST /sd/{mode}/v1, then polling
 * GET .../status/{id} to the end and downloading the images (sometimes abandoning the poll,
 * sometimes also subscribing over GraphQL); ~5 % invalid bodies (HTTP 400 expected).
 */

export async function restLoop(ctx: LoadContext, k: number) {
  const key = ctx.keys[k]!;
  // The other 40 % of the offered rate (see gqlLoop).
  const mean = (ctx.keys.length / (0.4 * ctx.options.rate)) * 1000;
  await sleep(rand(0, mean));
  while (!ctx.control.stopLoad) {
    let retryAfter: number | null = null;
    try {
      retryAfter = await restJob(ctx, k, key);
    } catch (err) {
      ctx.ledger.error(`REST network ${(err as { code?: string }).code ?? (err as Error).message}`, false);
    }
    await ctx.control.pause(retryAfter !== null ? retryAfter * 1000 : rand(0.5 * mean, 1.5 * mean));
  }
}

/** One job over REST, polled to its end; returns a Retry-After (s) when limited. */
async function restJob(ctx: LoadContext, k: number, key: string): Promise<number | null> {
  const { api, ledger, control } = ctx;
  const invalid = chance(0.05) ? invalidInput(ctx.images) : null;
  const mode: Mode = invalid?.mode ?? pick<Mode>(['text2image', 'text2image', 'image2image', 'inpainting']);
  const input = invalid?.input ?? validInput(mode, ctx.images);
  delete input.scheduler; // not a contract field
  const body = invalid && chance(0.2) ? '{"prompt": "broken json' : JSON.stringify(toRest(input));
  const started = performance.now();
  const res = await api.http('POST', `/sd/${mode}/v1`, key, body);
  const reply = parseJson(res.body) as { status?: string; id?: string; code?: string; error?: string; retry_after?: number } | null;
  if (res.status !== 200) {
    const expected = (res.status === 400 && invalid !== null) || res.status === 429;
    ledger.error(
      `REST ${res.status}${reply?.code ? ` ${reply.code}${limitKind(reply.error ?? '')}` : ''}`,
      expected,
      `${mode}: ${res.body.toString('utf8').slice(0, 200)}`,
    );
    if (res.status === 400 && invalid) ledger.count('invalid inputs refused (REST)');
    if (res.status === 400 && !invalid) ledger.problem('valid input refused (REST)', `${mode} ${res.body.toString('utf8').slice(0, 200)}`);
    return res.status === 429 ? Number(res.headers['retry-after'] ?? reply?.retry_after ?? 1) : null;
  }
  if (reply?.status !== 'PENDING' || !reply.id)
    return (ledger.problem('REST submit answered without a PENDING job', res.body.toString('utf8').slice(0, 200)), null);
  ledger.acceptLatencies.push(performance.now() - started);
  if (invalid) ledger.problem('invalid input accepted (REST)', invalid.what);
  const rec = ledger.accept(reply.id, k, 'rest', mode, Number(input.samples ?? 1));
  ledger.count(`accepted ${mode}`);
  if (chance(0.2)) control.follow(subscribeToEnd(ctx, k, rec)); // made over REST, followed over GraphQL
  if (chance(0.15)) return (ledger.count('REST polls abandoned'), null);

  // Poll to the end (past the end of the load, up to the drain deadline).
  while (Date.now() < control.drainDeadline) {
    await sleep(rand(300, 600));
    const st = await api.http('GET', `/sd/${mode}/v1/status/${reply.id}`, key);
    const s = parseJson(st.body) as { status?: string; code?: string; download_urls?: string[] } | null;
    if (st.status !== 200) {
      ledger.error(`REST status ${st.status}`, false, st.body.toString('utf8').slice(0, 200));
      return null;
    }
    if (s?.status === 'PENDING') continue;
    if (s?.status === 'SUCCESS') {
      rec.restFinal = 'SUCCESS';
      for (const u of s.download_urls ?? []) if (!(await api.download(u))) ledger.problem('REST download failed', u);
    } else rec.restFinal = s?.code === 'CANCELED' ? 'CANCELED' : 'FAILURE';
    ledger.count('REST polls to the end');
    return null;
  }
  return null;
}
