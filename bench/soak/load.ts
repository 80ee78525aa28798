import { gqlLoop } from './clients/graphql.js';
import { HttpApi } from './clients/http.js';
import { restLoop } from './clients/rest.js';
import { WsClients } from './clients/ws.js';
import { LoadControl } from './control.js';
import type { ImagePair } from './inputs.js';
import { Ledger } from './ledger.js';
import type { SoakOptions } from './options.js';
import { storms } from './storms.js';

/**
 * What the load generators share. Keys are referred to by index (k) so that a job's record says
 * which key owns it; the isolation check at the end asks with another.
 */
export interface LoadContext {
  readonly keys: string[];
  readonly options: SoakOptions;
  readonly images: ImagePair[];
  readonly ledger: Ledger;
  readonly control: LoadControl;
  readonly api: HttpApi;
  readonly ws: WsClients;
}

export function createLoad(url: string, keys: string[], options: SoakOptions, images: ImagePair[]): LoadContext {
  const ledger = new Ledger();
  const control = new LoadControl(ledger);
  return { keys, options, images, ledger, control, api: new HttpApi(url), ws: new WsClients(url, keys, ledger, control) };
}

/** A GraphQL and a REST client per key, and the storms; resolves when the load has stopped. */
export function startLoad(ctx: LoadContext): Promise<void> {
  const loops = [...ctx.keys.flatMap((_, k) => [gqlLoop(ctx, k), restLoop(ctx, k)]), storms(ctx)];
  return Promise.all(loops).then(() => {});
}

export async function closeLoad(ctx: LoadContext) {
  await ctx.ws.close();
  await ctx.api.close();
}
