import { print } from 'graphql';
import { Agent, request, type Dispatcher } from 'undici';
import { z } from 'zod';
import { CancelJobDocument, ModelsDocument } from '../../client/generated/graphql.js';
import { catalogueEntrySchema, type CatalogueEntry } from '../../catalogue/catalogue.js';

/**
 * What the engine asks of an upstream that is an instance of this server, beyond the contract's
 * REST protocol (which can neither list models nor cancel): its GraphQL API, through the same
 * typed operations our clients use. A hosted upstream has no such API; every call here is optional.
 */

export interface UpstreamEndpoint {
  url: string;
  apiKey: string | undefined;
}

const modelsReplySchema = z.object({ data: z.object({ models: z.array(catalogueEntrySchema) }) });
const MODELS_QUERY = print(ModelsDocument);
const CANCEL_MUTATION = print(CancelJobDocument);

export class UpstreamGraphQLClient {
  private readonly agent: Agent;

  constructor(timeoutMs: number) {
    this.agent = new Agent({ headersTimeout: timeoutMs, bodyTimeout: timeoutMs, connect: { timeout: timeoutMs } });
  }

  /** The upstream's model catalogue, or null when it has no GraphQL API or refuses. */
  async models(upstream: UpstreamEndpoint): Promise<CatalogueEntry[] | null> {
    const json = await this.post(upstream, { query: MODELS_QUERY, variables: {} });
    const parsed = modelsReplySchema.safeParse(json);
    return parsed.success ? parsed.data.data.models : null;
  }

  /** Best effort: asks the upstream to stop a job; any failure is ignored (the result is dropped anyway). */
  async cancelJob(upstream: UpstreamEndpoint, id: string): Promise<void> {
    await this.post(upstream, { query: CANCEL_MUTATION, variables: { id } });
  }

  /** Aborts calls in flight: they are all optional, and must not hold up a shutdown. */
  close(): Promise<void> {
    return this.agent.destroy();
  }

  private async post(upstream: UpstreamEndpoint, body: unknown): Promise<unknown> {
    try {
      const res = await request(new URL('/graphql', `${upstream.url}/`), {
        method: 'POST',
        body: JSON.stringify(body),
        headers: {
          'content-type': 'application/json',
          accept: 'application/graphql-response+json, application/json',
          ...(upstream.apiKey ? { 'api-key': upstream.apiKey } : {}),
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
