import { readFile } from 'node:fs/promises';
import { z } from 'zod';
import { Catalogue, catalogueEntrySchema } from '../../catalogue/catalogue.js';
import { DEFAULT_MODEL_ALIAS } from '../../generation/input.js';

/**
 * The remote engine's catalogue. The contract's REST protocol has no model listing, so the
 * operator lists the upstream's model ids in a JSON file (IMAGEPIPELINE_CATALOGUE):
 *   { "models": [ { "id": "...", "name": "...", "kind": "CHECKPOINT" | "EMBEDDING", ... } ] }
 * Without one, only the contract's default checkpoint alias `sd1.5` is offered.
 */

const catalogueFileSchema = z.union([
  z.object({ models: z.array(catalogueEntrySchema) }),
  z.array(catalogueEntrySchema).transform((models) => ({ models })),
]);

export const DEFAULT_REMOTE_CATALOGUE = new Catalogue([
  catalogueEntrySchema.parse({
    id: DEFAULT_MODEL_ALIAS,
    name: 'Stable Diffusion 1.5',
    kind: 'CHECKPOINT',
    description: "The engine's default SD 1.5 checkpoint",
  }),
]);

export async function loadCatalogueFile(path: string): Promise<Catalogue> {
  let raw: string;
  try {
    raw = await readFile(path, 'utf8');
  } catch (err) {
    throw new Error(`IMAGEPIPELINE_CATALOGUE: cannot read ${path}: ${(err as Error).message}`, { cause: err });
  }
  let json: unknown;
  try {
    json = JSON.parse(raw);
  } catch (err) {
    throw new Error(`IMAGEPIPELINE_CATALOGUE: ${path} is not JSON: ${(err as Error).message}`, { cause: err });
  }
  const parsed = catalogueFileSchema.safeParse(json);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    throw new Error(`IMAGEPIPELINE_CATALOGUE: ${path}: ${issue?.path.join('.') ?? ''}: ${issue?.message ?? 'invalid'}`);
  }
  const catalogue = new Catalogue(parsed.data.models);
  if (catalogue.find(DEFAULT_MODEL_ALIAS)?.kind !== 'CHECKPOINT') {
    throw new Error(
      `IMAGEPIPELINE_CATALOGUE: ${path} has no checkpoint with id or alias "${DEFAULT_MODEL_ALIAS}" (the contract's default model)`,
    );
  }
  return catalogue;
}
