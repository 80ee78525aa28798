import { existsSync } from 'node:fs';
import { rename, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import type { Logger } from 'pino';
import type { EngineConfig, LocalEngineConfig } from '../config.js';
import { ImageFetcher } from '../images/fetch-image.js';
import type { Engine } from './engine.js';
import { DEFAULT_REMOTE_CATALOGUE, loadCatalogueFile } from './imagepipeline/catalogue-file.js';
import { ImagePipelineEngine } from './imagepipeline/imagepipeline-engine.js';
import { loadEmbeddingFile } from '../diffusion/embeddings/index.js';
import { LocalEngine } from './local/local-engine.js';
import { scanModelDirectory } from './local/model-directory.js';
import { generateTinyPipeline } from '../../scripts/tiny-models/generate.js';

/** Builds the configured engine. */
export async function createEngine(config: EngineConfig, logger: Logger): Promise<Engine> {
  switch (config.kind) {
    case 'local':
      return createLocalEngine(config, logger);
    case 'imagepipeline':
      return new ImagePipelineEngine({
        url: config.url,
        apiKey: config.apiKey,
        timeoutMs: config.timeoutMs,
        retries: config.retries,
        maxImageBytes: config.maxImageBytes,
        probeIntervalMs: config.probeIntervalMs,
        catalogue: config.cataloguePath ? await loadCatalogueFile(config.cataloguePath) : undefined,
        fallbackCatalogue: DEFAULT_REMOTE_CATALOGUE,
        logger,
      });
  }
}

/**
 * The tiny models also answer to the ids in the contract's example requests, so those requests
 * work as written against a fresh server (with noise for images).
 */
const TINY_MANIFEST = {
  defaultCheckpoint: 'tiny',
  checkpoints: {
    tiny: { name: 'Tiny test model (random weights)', aliases: ['38ff8ad2-d62a-457c-8b2c-182e48e564f2'] },
    'tiny-inpainting': { name: 'Tiny inpainting test model (random weights)' },
  },
  embeddings: { 'tiny-a1111.pt': { aliases: ['f84133b4-aad8-44be-b9ce-7e7e3a8c111f'] } },
};

/**
 * Builds the tiny models in a scratch folder and renames it into place, so a process killed
 * half-way leaves no half-built folder behind: the manifest, written last, marks a finished one.
 */
async function buildTinyModels(modelsDir: string): Promise<void> {
  const scratch = `${modelsDir}.partial-${process.pid}`;
  await rm(scratch, { recursive: true, force: true });
  await generateTinyPipeline(path.join(scratch, 'tiny'));
  await generateTinyPipeline(path.join(scratch, 'tiny-inpainting'), { inpainting: true, embeddings: false });
  await writeFile(path.join(scratch, 'manifest.json'), `${JSON.stringify(TINY_MANIFEST, null, 2)}\n`);
  // Whatever an interrupted earlier build left (no manifest) is ours to replace.
  await rm(modelsDir, { recursive: true, force: true });
  await rename(scratch, modelsDir);
}

async function createLocalEngine(config: LocalEngineConfig, logger: Logger): Promise<LocalEngine> {
  let modelsDir = config.modelsDir;
  if (!modelsDir) {
    // No real weights configured: build the tiny test pipelines once, so the API works end to end.
    modelsDir = path.join(config.dataDir, 'models');
    if (!existsSync(path.join(modelsDir, 'manifest.json'))) await buildTinyModels(modelsDir);
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
    imageFetcher: new ImageFetcher(config.imageFetch),
    concurrency: config.concurrency,
    maxLoadedCheckpoints: config.maxLoadedCheckpoints,
    defaultScheduler: config.scheduler,
    noise: config.noise,
    worker: { executionProvider: config.executionProvider, intraOpThreads: config.intraOpThreads },
    readEmbedding: loadEmbeddingFile,
    uploadsDir,
    logger,
  });
}
