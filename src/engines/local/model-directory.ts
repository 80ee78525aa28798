import { existsSync } from 'node:fs';
import { readdir, readFile } from 'node:fs/promises';
import path from 'node:path';
import { z } from 'zod';
import { DEFAULT_MODEL_ALIAS } from '../../generation/input.js';
import { SCHEDULER_NAMES, type SchedulerName } from '../../generation/request.js';
import { Catalogue, catalogueEntrySchema, type CatalogueEntry } from '../../catalogue/catalogue.js';
import { EMBEDDING_EXTENSIONS } from '../../diffusion/embeddings/index.js';

/**
 * What MODELS_DIR holds: checkpoints (sub-folders in the diffusers ONNX layout) and
 * textual-inversion embeddings (files under MODELS_DIR/embeddings/ or <checkpoint>/embeddings/).
 * Ids are stable: the folder or file name, unless MODELS_DIR/manifest.json fixes them:
 *
 *   { "defaultCheckpoint": "stable-diffusion-v1-5",
 *     "checkpoints": { "stable-diffusion-v1-5": { "id": "38ff8ad2-…", "name": "SD 1.5", "scheduler": "EULER_A" } },
 *     "embeddings": { "UnrealisticDream.pt": { "id": "f84133b4-…", "triggerWords": ["UnrealisticDream"] } } }
 */

const entryOverrides = z.object({
  id: z.string().min(1).optional(),
  name: z.string().min(1).optional(),
  aliases: z.array(z.string().min(1)).optional(),
  description: z.string().optional(),
});

const manifestSchema = z.object({
  defaultCheckpoint: z.string().min(1).optional(),
  // scheduler: the checkpoint's own default, for requests that name none (else LOCAL_SCHEDULER).
  checkpoints: z.record(z.string(), entryOverrides.extend({ scheduler: z.enum(SCHEDULER_NAMES).optional() })).default({}),
  embeddings: z.record(z.string(), entryOverrides.extend({ triggerWords: z.array(z.string().min(1)).min(1).optional() })).default({}),
});

export interface LocalCheckpointInfo {
  id: string;
  dir: string;
  /** The manifest's default scheduler for this checkpoint, if it names one. */
  scheduler?: SchedulerName;
}

export interface LocalEmbeddingInfo {
  id: string;
  file: string;
  /** The word that invokes it (the first trigger word). */
  trigger: string;
  count: number;
  width: number;
}

export interface ModelDirectory {
  catalogue: Catalogue;
  checkpoints: Map<string, LocalCheckpointInfo>;
  embeddings: Map<string, LocalEmbeddingInfo>;
  /** Files that were skipped, with why (logged at start). */
  skipped: string[];
}

export type EmbeddingReader = (file: string) => Promise<{ count: number; width: number }>;

/** Sidecar written next to an uploaded embedding (DATA_DIR/embeddings/<id>.json). */
export const uploadSidecarSchema = z.object({
  id: z.string().min(1),
  name: z.string().min(1),
  triggerWords: z.array(z.string().min(1)).min(1),
  file: z.string().min(1),
  createdAt: z.string(),
});
export type UploadSidecar = z.output<typeof uploadSidecarSchema>;

export async function scanModelDirectory(
  dir: string,
  readEmbedding: EmbeddingReader,
  options: { uploadsDir?: string } = {},
): Promise<ModelDirectory> {
  if (!existsSync(dir)) throw new Error(`MODELS_DIR: ${dir} does not exist`);
  const manifestPath = path.join(dir, 'manifest.json');
  const manifest = existsSync(manifestPath) ? parseManifest(await readFile(manifestPath, 'utf8'), manifestPath) : manifestSchema.parse({});
  const skipped: string[] = [];
  const entries: CatalogueEntry[] = [];
  const checkpoints = new Map<string, LocalCheckpointInfo>();
  const embeddings = new Map<string, LocalEmbeddingInfo>();

  const folders = (await readdir(dir, { withFileTypes: true }))
    .filter((d) => d.isDirectory() && existsSync(path.join(dir, d.name, 'unet', 'model.onnx')))
    .map((d) => d.name)
    .sort();
  if (folders.length === 0) throw new Error(`MODELS_DIR: ${dir} has no checkpoint (a folder with unet/model.onnx)`);
  const inpaintingFolders = new Set<string>();
  for (const folder of folders) if (await looksLikeInpainting(path.join(dir, folder))) inpaintingFolders.add(folder);
  const defaultFolder = manifest.defaultCheckpoint ?? folders.find((f) => !inpaintingFolders.has(f)) ?? folders[0]!;
  if (!folders.includes(defaultFolder)) throw new Error(`${manifestPath}: defaultCheckpoint "${defaultFolder}" is not a checkpoint folder`);

  for (const folder of folders) {
    const o = manifest.checkpoints[folder] ?? {};
    const id = o.id ?? folder;
    const aliases = [...(o.aliases ?? [])];
    if (folder === defaultFolder && id !== DEFAULT_MODEL_ALIAS && !aliases.includes(DEFAULT_MODEL_ALIAS)) aliases.push(DEFAULT_MODEL_ALIAS);
    entries.push(
      catalogueEntrySchema.parse({
        id,
        name: o.name ?? folder,
        kind: 'CHECKPOINT',
        description: o.description ?? null,
        aliases,
        inpainting: inpaintingFolders.has(folder),
      }),
    );
    checkpoints.set(id, { id, dir: path.join(dir, folder), ...(o.scheduler ? { scheduler: o.scheduler } : {}) });
  }

  const embeddingFiles = [
    ...(await listEmbeddingFiles(path.join(dir, 'embeddings'))),
    ...(await Promise.all(folders.map((f) => listEmbeddingFiles(path.join(dir, f, 'embeddings'))))).flat(),
  ];
  const uploads = options.uploadsDir ? await listUploads(options.uploadsDir, skipped) : new Map<string, UploadSidecar>();
  for (const file of [...embeddingFiles, ...uploads.keys()]) {
    const base = path.basename(file);
    const upload = uploads.get(file);
    const o: z.output<typeof entryOverrides> & { triggerWords?: string[] } = upload ?? manifest.embeddings[base] ?? {};
    const stem = base.slice(0, base.length - path.extname(base).length);
    let info: { count: number; width: number };
    try {
      info = await readEmbedding(file);
    } catch (err) {
      skipped.push(`${file}: ${(err as Error).message}`);
      continue;
    }
    const id = o.id ?? stem;
    if (embeddings.has(id) || checkpoints.has(id)) {
      skipped.push(`${file}: the id "${id}" is already taken (set another in manifest.json)`);
      continue;
    }
    const triggerWords = o.triggerWords ?? [stem];
    const clash = [...embeddings.values()].find((e) => e.trigger.toLowerCase() === triggerWords[0]!.toLowerCase());
    if (clash) {
      skipped.push(`${file}: its trigger word "${triggerWords[0]}" is already ${clash.id}'s (set another in manifest.json)`);
      continue;
    }
    entries.push(
      catalogueEntrySchema.parse({
        id,
        name: o.name ?? stem,
        kind: 'EMBEDDING',
        description: o.description ?? null,
        aliases: o.aliases ?? [],
        triggerWords,
        vectors: info.count,
      }),
    );
    embeddings.set(id, { id, file, trigger: triggerWords[0]!, count: info.count, width: info.width });
  }
  return { catalogue: new Catalogue(entries), checkpoints, embeddings, skipped };
}

function parseManifest(text: string, file: string) {
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (err) {
    throw new Error(`${file}: not JSON: ${(err as Error).message}`, { cause: err });
  }
  const parsed = manifestSchema.safeParse(json);
  if (!parsed.success) {
    const issue = parsed.error.issues[0]!;
    throw new Error(`${file}: ${issue.path.join('.')}: ${issue.message}`);
  }
  return parsed.data;
}

/** Uploaded embeddings: each file with its JSON sidecar (ids and trigger words fixed at upload). */
async function listUploads(dir: string, skipped: string[]): Promise<Map<string, UploadSidecar>> {
  const found = new Map<string, UploadSidecar>();
  if (!existsSync(dir)) return found;
  for (const name of (await readdir(dir)).filter((n) => n.endsWith('.json')).sort()) {
    const sidecar = path.join(dir, name);
    try {
      const meta = uploadSidecarSchema.parse(JSON.parse(await readFile(sidecar, 'utf8')));
      found.set(path.join(dir, path.basename(meta.file)), meta);
    } catch (err) {
      skipped.push(`${sidecar}: ${(err as Error).message}`);
    }
  }
  return found;
}

async function listEmbeddingFiles(dir: string): Promise<string[]> {
  if (!existsSync(dir)) return [];
  return (await readdir(dir, { withFileTypes: true }))
    .filter((d) => d.isFile() && (EMBEDDING_EXTENSIONS as readonly string[]).includes(path.extname(d.name).toLowerCase()))
    .map((d) => path.join(dir, d.name))
    .sort();
}

/** model_index.json names inpainting pipelines; the UNet probe at load time has the last word. */
async function looksLikeInpainting(dir: string): Promise<boolean> {
  try {
    const index = JSON.parse(await readFile(path.join(dir, 'model_index.json'), 'utf8')) as { _class_name?: string };
    return /inpaint/i.test(index._class_name ?? '');
  } catch {
    return false;
  }
}
