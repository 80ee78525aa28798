import { z } from 'zod';
import type { FieldIssue } from '../generation/input.js';
import type { GenerationParams } from '../generation/request.js';

/** The model catalogue: base checkpoints and textual-inversion embeddings an engine can use. */

export const MODEL_KINDS = ['CHECKPOINT', 'EMBEDDING'] as const;
export type ModelKind = (typeof MODEL_KINDS)[number];

export const BASE_MODELS = ['SD_1_5'] as const;
export type BaseModel = (typeof BASE_MODELS)[number];

export const catalogueEntrySchema = z.object({
  id: z.string().min(1),
  name: z.string().min(1),
  kind: z.enum(MODEL_KINDS),
  baseModel: z.enum(BASE_MODELS).default('SD_1_5'),
  description: z
    .string()
    .nullish()
    .transform((v) => v ?? null),
  /** Other ids that name this model; the default checkpoint answers to `sd1.5`. */
  aliases: z.array(z.string().min(1)).default([]),
  /** Embeddings: the words that, written in a prompt, invoke the embedding. */
  triggerWords: z.array(z.string().min(1)).default([]),
  /** Embeddings: how many token vectors the embedding holds. */
  vectors: z
    .number()
    .int()
    .positive()
    .nullish()
    .transform((v) => v ?? null),
  /** Checkpoints: true for inpainting checkpoints (9-channel UNet). */
  inpainting: z.boolean().default(false),
});

export type CatalogueEntry = z.output<typeof catalogueEntrySchema>;

export interface ModelFilter {
  kind?: ModelKind | null;
  baseModel?: BaseModel | null;
}

/** An immutable snapshot of a catalogue with lookups by id or alias. */
export class Catalogue {
  private readonly byName = new Map<string, CatalogueEntry>();

  constructor(readonly entries: readonly CatalogueEntry[]) {
    for (const entry of entries) {
      for (const name of [entry.id, ...entry.aliases]) {
        if (this.byName.has(name)) throw new Error(`catalogue: the id or alias "${name}" is used twice`);
        this.byName.set(name, entry);
      }
    }
  }

  find(idOrAlias: string): CatalogueEntry | undefined {
    return this.byName.get(idOrAlias);
  }

  list(filter: ModelFilter = {}): CatalogueEntry[] {
    return this.entries.filter((e) => (!filter.kind || e.kind === filter.kind) && (!filter.baseModel || e.baseModel === filter.baseModel));
  }
}

/**
 * Checks the ids a request names against the catalogue. Returns one issue per unknown id,
 * each naming the id, so "which field and why" survives to the client.
 */
export function checkAgainstCatalogue(params: GenerationParams, catalogue: Catalogue): FieldIssue[] {
  const issues: FieldIssue[] = [];
  const model = catalogue.find(params.modelId);
  if (!model || model.kind !== 'CHECKPOINT') {
    issues.push({
      path: ['modelId'],
      code: 'UNKNOWN_MODEL',
      message: `unknown model "${params.modelId}": not a checkpoint in the catalogue (query models to list them)`,
    });
  }
  params.embeddings.forEach((id, index) => {
    const entry = catalogue.find(id);
    if (!entry || entry.kind !== 'EMBEDDING') {
      issues.push({
        path: ['embeddings', index],
        code: 'UNKNOWN_EMBEDDING',
        message: `unknown embedding "${id}": not an embedding in the catalogue (query models with kind EMBEDDING)`,
      });
    } else if (model && entry.baseModel !== model.baseModel) {
      issues.push({
        path: ['embeddings', index],
        code: 'INCOMPATIBLE_EMBEDDING',
        message: `embedding "${id}" is for ${entry.baseModel}, not for the model's ${model.baseModel}`,
      });
    }
  });
  return issues;
}
