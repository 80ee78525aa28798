import { print } from 'graphql';
import { Agent, request, type Dispatcher } from 'undici';
import { z } from 'zod';
import { CancelJobDocument, ModelsDocument } from '../../client/generated/graphql.js';
import { Catalogue, catalogueEntrySchema, type CatalogueEntry } from '../../catalogue/catalogue.js';

/**
 * What a gateway asks of workers that are instances of this server, beyond the contract's REST
 * protocol (which can neither list models nor cancel): their GraphQL API, through the same typed
 * operations our clients use. A hosted upstream has no such API; every call here is optional.
 */

export interface WorkerEndpoint {
  url: string;
  apiKey: string | undefined;
}

const modelsReplySchema = z.object({ data: z.object({ models: z.array(catalogueEntrySchema) }) });
const MODELS_QUERY = print(ModelsDocument);
const CANCEL_MUTATION = print(CancelJobDocument);

export class WorkerGraphQLClient {
  private readonly agent: Agent;

  constructor(timeoutMs: number) {
    this.agent = new Agent({ headersTimeout: timeoutMs, bodyTimeout: timeoutMs, connect: { timeout: timeoutMs } });
  }

  /** The worker's model catalogue, or null when it has no GraphQL API or refuses. */
  async models(worker: WorkerEndpoint): Promise<CatalogueEntry[] | null> {
    const json = await this.post(worker, { query: MODELS_QUERY, variables: {} });
    const parsed = modelsReplySchema.safeParse(json);
    return parsed.success ? parsed.data.data.models : null;
  }

  /** Best effort: asks the worker to stop a job; any failure is ignored (the result is dropped anyway). */
  async cancelJob(worker: WorkerEndpoint, id: string): Promise<void> {
    await this.post(worker, { query: CANCEL_MUTATION, variables: { id } });
  }

  /** Aborts calls in flight: they are all optional, and must not hold up a shutdown. */
  close(): Promise<void> {
    return this.agent.destroy();
  }

  private async post(worker: WorkerEndpoint, body: unknown): Promise<unknown> {
    try {
      const res = await request(new URL('/graphql', `${worker.url}/`), {
        method: 'POST',
        body: JSON.stringify(body),
        headers: {
          'content-type': 'application/json',
          accept: 'application/graphql-response+json, application/json',
          ...(worker.apiKey ? { 'api-key': worker.apiKey } : {}),
        },
        dispatcher: this.agent as Dispatcher,
      });
      const text = await res.body.text();
      if (res.statusCode >= 300 && res.statusCode !== 400) return null;
      return JSON.parse(text) as unknown;
    } catch {
      return null;
    }
  }
}

/**
 * One catalogue out of several workers'. Workers behind one gateway are meant to serve the same
 * models; where they differ, the first worker to name an id or alias wins and later clashes are
 * left out rather than failing the whole catalogue.
 */
export function mergeCatalogues(lists: readonly (readonly CatalogueEntry[])[]): Catalogue {
  const taken = new Set<string>();
  const merged: CatalogueEntry[] = [];
  for (const list of lists) {
    for (const entry of list) {
      const names = [entry.id, ...entry.aliases];
      if (names.some((n) => taken.has(n))) continue;
      for (const n of names) taken.add(n);
      merged.push(entry);
    }
  }
  return new Catalogue(merged);
}
