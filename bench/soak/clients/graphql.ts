import {
  CancelJobDocument,
  Image2ImageDocument,
  InpaintingDocument,
  Text2ImageDocument,
  type JobFieldsFragment,
} from '../../../src/client/generated/graphql.js';
import { sleep } from '../../lib/load.js';
import { chance, invalidInput, pick, rand, validInput, type Mode } from '../inputs.js';
import { EXPECTED_GRAPHQL, type JobRec } from '../ledger.js';
import type { LoadContext } from '../load.js';
import { subscribeAndDrop, subscribeAndReconnect, subscribeToEnd } from './subscriptions.js';

/**
 * A key's GraphQL client: mutations in all three modes, ~5 % invalid inputs (BAD_USER_INPUT
 * expected), ~2 % image2image from a loopback URL; each accepted job is then, at random,
 * followed to its end, followed and dropped, followed across a reconnect, canceled, or left alone.
 */

export async function gqlLoop(ctx: LoadContext, k: number) {
  // This client's share of the offered rate: 60 % of it over GraphQL, spread over the keys.
  const mean = (ctx.keys.length / (0.6 * ctx.options.rate)) * 1000;
  await sleep(rand(0, mean));
  while (!ctx.control.stopLoad) {
    const retryAfter = await submitGraphql(ctx, k);
    await ctx.control.pause(retryAfter !== null ? retryAfter * 1000 : rand(0.5 * mean, 1.5 * mean));
  }
}

/** Submits one job over GraphQL; returns a Retry-After (s) when limited. */
async function submitGraphql(ctx: LoadContext, k: number): Promise<number | null> {
  const { api, ledger, control } = ctx;
  const key = ctx.keys[k]!;
  const roll = Math.random();
  let mode: Mode;
  let input: Record<string, unknown>;
  let invalid: string | null = null;
  let expectImageUnavailable = false;
  if (roll < 0.05) {
    const bad = invalidInput(ctx.images);
    mode = bad.mode;
    input = bad.input;
    invalid = bad.what;
  } else if (roll < 0.07) {
    mode = 'image2image';
    // A name that resolves to loopback: refused at request time, or accepted and then failed
    // IMAGE_UNAVAILABLE by the fetcher (which checks addresses after DNS); both are right.
    input = { ...validInput(mode, ctx.images), initImage: 'http://localhost:9/private.png' };
    expectImageUnavailable = true;
  } else {
    mode = pick<Mode>(['text2image', 'text2image', 'image2image', 'inpainting']);
    input = validInput(mode, ctx.images);
  }
  const started = performance.now();
  let job: JobFieldsFragment | null;
  let outcome;
  if (mode === 'text2image') {
    outcome = await api.gql(key, Text2ImageDocument, { input });
    job = outcome.data?.text2image ?? null;
  } else if (mode === 'image2image') {
    outcome = await api.gql(key, Image2ImageDocument, { input });
    job = outcome.data?.image2image ?? null;
  } else {
    outcome = await api.gql(key, InpaintingDocument, { input });
    job = outcome.data?.inpainting ?? null;
  }
  if (outcome.transport) return (void ledger.error(outcome.transport, false, mode), null);
  if (outcome.error) {
    const code = outcome.error.extensions?.code;
    if (invalid && code === 'BAD_USER_INPUT') ledger.count('invalid inputs refused (GraphQL)');
    else if (expectImageUnavailable && code === 'BAD_USER_INPUT') ledger.count('private initImage refused at request time');
    else if (code === 'BAD_USER_INPUT') ledger.problem('valid input refused', `${mode} ${JSON.stringify(outcome.error)}`);
    return ledger.gqlError(outcome.error, EXPECTED_GRAPHQL, mode);
  }
  if (!job || job.status !== 'PENDING' || !job.id)
    return (void ledger.problem('mutation answered without a PENDING job', JSON.stringify(job)), null);
  ledger.acceptLatencies.push(performance.now() - started);
  if (invalid) ledger.problem('invalid input accepted', invalid);
  const rec = ledger.accept(job.id, k, 'graphql', mode, Number(input.samples ?? 1), expectImageUnavailable);
  ledger.count(`accepted ${mode}`);

  // What this client does next with its job.
  const next = Math.random();
  if (next < 0.35) control.follow(subscribeToEnd(ctx, k, rec));
  else if (next < 0.5) control.follow(subscribeAndDrop(ctx, k, rec));
  else if (next < 0.6) control.follow(subscribeAndReconnect(ctx, k, rec));
  if (chance(0.08)) control.follow(cancelLater(ctx, k, rec, rand(0, 1_500)));
  return null;
}

async function cancelLater(ctx: LoadContext, k: number, rec: JobRec, delayMs: number) {
  const { ledger } = ctx;
  await sleep(delayMs);
  const r = await ctx.api.gql(ctx.keys[k]!, CancelJobDocument, { id: rec.id });
  if (r.transport) return ledger.error(r.transport, false, 'cancelJob');
  if (r.error) return void ledger.gqlError(r.error, EXPECTED_GRAPHQL, 'cancelJob');
  const status = r.data?.cancelJob.status;
  if (!status) return ledger.problem('cancelJob answered nothing', JSON.stringify(r.data));
  rec.cancelAnswered = status;
  ledger.count(`cancelJob answered ${status}`);
}
