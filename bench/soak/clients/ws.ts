import type { TypedDocumentNode } from '@graphql-typed-document-node/core';
import { createClient, type Client } from 'graphql-ws';
import type WebSocketType from 'ws';
import WebSocket from 'ws';
import { JobStatusDocument, type JobFieldsFragment } from '../../../src/client/generated/graphql.js';
import { sleep } from '../../lib/load.js';
import type { LoadControl } from '../control.js';
import { rand } from '../inputs.js';
import type { GqlError, JobRec, Ledger } from '../ledger.js';
import { operation } from './http.js';

/**
 * graphql-ws connections: each key's long-lived shared connection, replaced every ~30 s (clients
 * that come and go), and one-off clients; every close code they see is counted.
 */

export interface SubscriptionEnd {
  how: 'complete' | 'error';
  last: JobFieldsFragment | null;
  err?: unknown;
}

interface Shared {
  client: Client;
  since: number;
  /** Subscriptions running on it: it is disposed once they are done. */
  active: number;
}

export class WsClients {
  readonly url: string;
  private readonly clients = new Set<Client>();
  private readonly persistent = new Map<number, Shared>();

  constructor(
    httpUrl: string,
    private readonly keys: string[],
    private readonly ledger: Ledger,
    private readonly control: LoadControl,
  ) {
    this.url = `${httpUrl.replace(/^http/, 'ws')}/graphql`;
  }

  /** A graphql-ws client; counts every close code it sees (our own disconnects are flagged). */
  client(k: number, opts: { retry: boolean; onSocket?: (s: WebSocketType, wasRetry: boolean) => void; ourTerminate?: () => boolean }) {
    const client = createClient({
      url: this.url,
      webSocketImpl: WebSocket,
      connectionParams: { apiKey: this.keys[k]! },
      lazy: true,
      keepAlive: 0,
      retryAttempts: opts.retry ? 10 : 0,
      shouldRetry: () => opts.retry,
      retryWait: (n) => sleep(100 + 200 * n),
      on: {
        connected: (socket, _payload, wasRetry) => opts.onSocket?.(socket as WebSocketType, wasRetry),
        closed: (event) => {
          const code = (event as { code?: number }).code ?? 0;
          if (code === 1006 && opts.ourTerminate?.()) this.ledger.count('WS sockets destroyed by the client (1006)');
          else if (code === 1000) this.ledger.count('WS closed normally by the client (1000)');
          else this.ledger.error(`WS close ${code}`, code === 4429, (event as { reason?: string }).reason ?? '');
        },
      },
    });
    this.clients.add(client);
    return client;
  }

  async release(client: Client) {
    await client.dispose();
    this.clients.delete(client);
  }

  /** The key's long-lived subscription connection, replaced every ~30 s (the old one is disposed once idle). */
  shared(k: number): Shared {
    let entry = this.persistent.get(k);
    if (!entry || Date.now() - entry.since > rand(20_000, 40_000)) {
      if (entry) this.retire(entry);
      entry = { client: this.client(k, { retry: true }), since: Date.now(), active: 0 };
      this.persistent.set(k, entry);
      this.ledger.count('WS subscription clients (re)created');
    }
    return entry;
  }

  private retire(entry: Shared) {
    const done = async () => {
      while (entry.active > 0 && Date.now() < this.control.drainDeadline) await sleep(200);
      await this.release(entry.client);
    };
    this.control.follow(done());
  }

  /** Subscribes and records every value; resolves when the subscription ends, however it ends. */
  subscribe(
    client: Client,
    rec: JobRec,
    onValue: (job: JobFieldsFragment, n: number) => void,
  ): { done: Promise<SubscriptionEnd>; dispose: () => void } {
    let dispose = () => {};
    const done = new Promise<SubscriptionEnd>((resolve) => {
      let last: JobFieldsFragment | null = null;
      let n = 0;
      const { query, operationName } = operation(JobStatusDocument as TypedDocumentNode<unknown, unknown>);
      dispose = client.subscribe<{ jobStatus: JobFieldsFragment }>(
        { query, operationName, variables: { id: rec.id } },
        {
          next: (r) => {
            if (r.errors?.length) return void this.ledger.gqlError(r.errors[0] as GqlError, new Set(['RATE_LIMITED']), 'jobStatus');
            const job = r.data?.jobStatus;
            if (!job || job.id !== rec.id)
              return this.ledger.problem('jobStatus value for another job', JSON.stringify(r.data).slice(0, 200));
            last = job;
            onValue(job, ++n);
          },
          error: (err) => resolve({ how: 'error', last, err }),
          complete: () => resolve({ how: 'complete', last }),
        },
      );
    });
    return { done, dispose: () => dispose() };
  }

  /** Graphql-ws errors: a close event (counted by the client's `closed`), or GraphQL errors. */
  subscriptionError(err: unknown) {
    if (Array.isArray(err)) return void this.ledger.gqlError(err[0] as GqlError, new Set(['RATE_LIMITED']), 'jobStatus');
    if (err && typeof err === 'object' && 'code' in err) return; // counted by `closed`
    this.ledger.error('WS subscription error', false, err instanceof Error ? err.message : String(err));
  }

  async close() {
    await Promise.all([...this.clients].map(async (c) => c.dispose()));
  }
}
