import type { EngineConfig } from '../config.js';
import type { Engine } from './engine.js';
import { DEFAULT_REMOTE_CATALOGUE, loadCatalogueFile } from './imagepipeline/catalogue-file.js';
import { ImagePipelineEngine } from './imagepipeline/imagepipeline-engine.js';

/** Builds the configured engine. */
export async function createEngine(config: EngineConfig): Promise<Engine> {
  switch (config.kind) {
    case 'imagepipeline': {
      const catalogue = config.cataloguePath ? await loadCatalogueFile(config.cataloguePath) : DEFAULT_REMOTE_CATALOGUE;
      return new ImagePipelineEngine(
        {
          baseUrl: config.baseUrl,
          apiKey: config.apiKey,
          timeoutMs: config.timeoutMs,
          retries: config.retries,
          maxImageBytes: config.maxImageBytes,
        },
        catalogue,
      );
    }
  }
}
