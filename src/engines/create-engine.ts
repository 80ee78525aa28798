import { existsSync } from 'node:fs';
import path from 'node:path';
import type { Logger } from 'pino';
import type { EngineConfig, LocalEngineConfig } from '../config.js';
import type { Engine } from './engine.js';
import { DEFAULT_REMOTE_CATALOGUE, loadCatalogueFile } from './imagepipeline/catalogue-file.js';
import { ImagePipelineEngine } from './imagepipeline/imagepipeline-engine.js';
import { loadEmbeddingFile } from './local/embeddings/index.js';
import { LocalEngine } from './local/local-engine.js';
import { scanModelDirectory } from './local/model-directory.js';
import { generateTinyPipeline } from './local/tiny/generate.js';

/** Builds the configured engine. */
export async function createEngine(config: EngineConfig, logger: Logger): Promise<Engine> {
  switch (config.kind) {
    case 'local':
      return createLocalEngine(config, logger);
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

async function createLocalEngine(config: LocalEngineConfig, logger: Logger): Promise<LocalEngine> {
  let modelsDir = config.modelsDir;
  if (!modelsDir) {
    // No real weights configured: build the tiny test pipelines once, so the API works end to end.
    modelsDir = path.join(config.dataDir, 'models');
    if (!existsSync(path.join(modelsDir, 'tiny', 'unet', 'model.onnx'))) {
      await generateTinyPipeline(path.join(modelsDir, 'tiny'));
      await generateTinyPipeline(path.join(modelsDir, 'tiny-inpainting'), { inpainting: true, embeddings: false });
    }
    logger.warn(
      { modelsDir },
      'MODELS_DIR is not set: serving TINY RANDOM TEST MODELS, so every image is noise. ' +
        'Point MODELS_DIR at a folder holding a real SD 1.5 ONNX export (diffusers layout) for real images.',
    );
  }
  const uploadsDir = path.join(config.dataDir, 'embeddings');
  const models = await scanModelDirectory(modelsDir, loadEmbeddingFile, { uploadsDir });
  for (const problem of models.skipped) logger.warn({ problem }, 'skipped a model file');
  return new LocalEngine(models, {
    concurrency: config.concurrency,
    maxLoadedCheckpoints: config.maxLoadedCheckpoints,
    defaultScheduler: config.scheduler,
    worker: { executionProvider: config.executionProvider, intraOpThreads: config.intraOpThreads },
    readEmbedding: loadEmbeddingFile,
    uploadsDir,
    logger,
  });
}
