import type { Engine } from '../engines/engine.js';
import type { CatalogueEntry, ModelFilter } from './catalogue.js';

/** Read access to the engine's model catalogue. */
export class CatalogueService {
  constructor(private readonly engine: Engine) {}

  async list(filter: ModelFilter = {}): Promise<CatalogueEntry[]> {
    return (await this.engine.catalogue()).list(filter);
  }

  async find(idOrAlias: string): Promise<CatalogueEntry | null> {
    return (await this.engine.catalogue()).find(idOrAlias) ?? null;
  }
}
