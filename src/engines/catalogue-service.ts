import type { EmbeddingUpload, Engine } from './engine.js';
import { ApiError } from '../errors.js';
import type { CatalogueEntry, ModelFilter } from '../catalogue/catalogue.js';

/** Read access to the engine's model catalogue. */
export class CatalogueService {
  constructor(private readonly engine: Engine) {}

  async list(filter: ModelFilter = {}): Promise<CatalogueEntry[]> {
    return (await this.engine.catalogue()).list(filter);
  }

  /** Adds an embedding through the engine, if it takes uploads. */
  uploadEmbedding(upload: EmbeddingUpload): Promise<CatalogueEntry> {
    if (!this.engine.addEmbedding) {
      return Promise.reject(new ApiError('NOT_SUPPORTED', `the ${this.engine.name} engine does not accept embedding uploads`, 400));
    }
    return this.engine.addEmbedding(upload);
  }

  async find(idOrAlias: string): Promise<CatalogueEntry | null> {
    return (await this.engine.catalogue()).find(idOrAlias) ?? null;
  }
}
