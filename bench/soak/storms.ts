import { createClient, type Client } from 'graphql-ws';
import WebSocket from 'ws';
import { CancelJobDocument, CreateText2ImageDocument, Text2ImageDocument } from '../../src/client/generated/graphql.js';
import { sleep } from '../lib/load.js';
import { pick, PROMPTS } from './inputs.js';
import { EXPECTED_GRAPHQL, TERMINAL, type GqlError } from './ledger.js';
import type { LoadContext } from './load.js';

/**
 * Storms, each just over one of a key's limits (LIMITS in options.ts), so that the limits are
 * seen to hold under load and the refused work leaves nothing behind. Every stormEveryMs one key
 * gets the next kind, in turn.
 */

export async function storms(ctx: LoadContext) {
  const kinds = [burst, connectionStorm, subscriptionStorm];
  let i = 0;
  await ctx.control.pause(ctx.options.stormEveryMs / 2);
  while (!ctx.control.stopLoad) {
    const k = i % ctx.keys.length;
    await kinds[i % kinds.length]!(ctx, k);
    i++;
    await ctx.control.pause(ctx.options.stormEveryMs);
  }
}

/** 40 mutations at once: over the burst of 30 (RATE_LIMITED expected). */
async function burst({ api, ledger, keys }: LoadContext, k: number) {
  const key = keys[k]!;
  let ok = 0;
  let limited = 0;
  await Promise.all(
    Array.from({ length: 40 }, async () => {
      const input = { prompt: pick(PROMPTS), width: 64, height: 64, numInferenceSteps: 2, safetyChecker: false };
      const r = await api.gql(key, CreateText2ImageDocument, { input });
      if (r.transport) return ledger.error(r.transport, false, 'burst');
      if (r.error) {
        if (r.error.extensions?.code === 'RATE_LIMITED') limited++;
        return void ledger.gqlError(r.error, EXPECTED_GRAPHQL, 'burst');
      }
      const job = r.data?.text2image;
      if (!job || job.status !== 'PENDING') return ledger.problem('burst mutation answered without a PENDING job', JSON.stringify(r.data));
      ledger.accept(job.id, k, 'burst', 'text2image', 1);
      ledger.count('accepted text2image');
      ok++;
    }),
  );
  ledger.count('storm: bursts of 40 mutations');
  ledger.count('storm: burst mutations accepted', ok);
  ledger.count('storm: burst mutations RATE_LIMITED', limited);
}

/** 55 connections at once: over the 50 a key may hold (close 4429 expected). */
async function connectionStorm({ ws, ledger, keys }: LoadContext, k: number) {
  let connected = 0;
  let refused = 0;
  const storm: Client[] = [];
  await Promise.all(
    Array.from(
      { length: 55 },
      () =>
        new Promise<void>((resolve) => {
          const timer = setTimeout(resolve, 10_000);
          // Not lazy, unlike the clients of the load: each must connect now, without subscribing.
          const client = createClient({
            url: ws.url,
            webSocketImpl: WebSocket,
            connectionParams: { apiKey: keys[k]! },
            lazy: false,
            keepAlive: 0,
            retryAttempts: 0,
            onNonLazyError: () => {},
            on: {
              connected: () => {
                connected++;
                clearTimeout(timer);
                resolve();
              },
              closed: (event) => {
                const code = (event as { code?: number }).code ?? 0;
                if (code === 1000) return;
                if (code === 4429) refused++;
                ledger.error(`WS close ${code}`, code === 4429);
                clearTimeout(timer);
                resolve();
              },
            },
          });
          storm.push(client);
        }),
    ),
  );
  await Promise.all(storm.map(async (c) => c.dispose()));
  ledger.count('storm: 55 connections at once');
  ledger.count('storm: connections accepted', connected);
  ledger.count('storm: connections refused 4429', refused);
}

/** 510 subscriptions on one socket: over the 500 a key may run (RATE_LIMITED expected). The job is canceled after. */
async function subscriptionStorm({ api, ws, ledger, control, keys }: LoadContext, k: number) {
  const key = keys[k]!;
  // A long job (40 steps, 256x256, 2 samples), so that it is still running when all 510 have subscribed.
  const input = { prompt: pick(PROMPTS), width: 256, height: 256, numInferenceSteps: 40, samples: 2, safetyChecker: false };
  const r = await api.gql(key, Text2ImageDocument, { input });
  if (r.transport) return ledger.error(r.transport, false, 'storm job');
  if (r.error) return void ledger.gqlError(r.error, EXPECTED_GRAPHQL, 'storm job');
  const job = r.data!.text2image;
  const rec = ledger.accept(job.id, k, 'storm', 'text2image', 2);
  ledger.count('accepted text2image');
  const client = ws.client(k, { retry: false });
  let refused = 0;
  let settled = 0;
  const subs = Array.from({ length: 510 }, () => {
    let first = true;
    const s = ws.subscribe(client, rec, () => {
      if (first) {
        first = false;
        settled++;
      }
    });
    void s.done.then((end) => {
      if (end.how === 'error') {
        if (Array.isArray(end.err) && (end.err[0] as GqlError).extensions?.code === 'RATE_LIMITED') refused++;
        ws.subscriptionError(end.err); // counted by code (RATE_LIMITED (subscriptions cap))
      }
      if (first) {
        first = false;
        settled++;
      }
    });
    return s;
  });
  const until = Date.now() + 20_000;
  while (settled < subs.length && Date.now() < until) await sleep(50);
  const c = await api.gql(key, CancelJobDocument, { id: job.id });
  if (c.error) ledger.gqlError(c.error, EXPECTED_GRAPHQL, 'storm cancel');
  else if (c.data) rec.cancelAnswered = c.data.cancelJob.status;
  const ends = await control.untilDrainDeadline(Promise.all(subs.map((s) => s.done)));
  const completed = ends?.filter((e) => e.how === 'complete' && e.last && TERMINAL.has(e.last.status)).length ?? 0;
  await ws.release(client);
  ledger.count('storm: 510 subscriptions on one socket');
  ledger.count('storm: subscriptions refused RATE_LIMITED', refused);
  ledger.count('storm: subscriptions completed with the final state', completed);
  if (completed + refused !== subs.length)
    ledger.problem('storm subscriptions neither refused nor completed', `${subs.length - completed - refused} of ${subs.length}`);
}
