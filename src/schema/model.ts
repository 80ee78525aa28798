import { InputValidationError } from '../generation/input.js';
import { BASE_MODELS, MODEL_KINDS, type CatalogueEntry } from '../catalogue/catalogue.js';
import { builder } from './builder.js';
import { authorized } from './context.js';

const ModelKind = builder.enumType('ModelKind', {
  description: 'What a catalogue entry is.',
  values: {
    CHECKPOINT: { value: MODEL_KINDS[0], description: 'A base model: what modelId names.' },
    EMBEDDING: { value: MODEL_KINDS[1], description: 'A textual-inversion embedding: what embeddings name.' },
  } as const,
});

const BaseModel = builder.enumType('BaseModel', {
  description: 'The model family a checkpoint belongs to, or an embedding was trained for.',
  values: { SD_1_5: { value: BASE_MODELS[0], description: 'Stable Diffusion 1.5 (768-wide text embeddings).' } } as const,
});

export const Model = builder.objectRef<CatalogueEntry>('Model').implement({
  description: 'An entry of the model catalogue: a base checkpoint or a textual-inversion embedding.',
  fields: (t) => ({
    id: t.exposeID('id', { description: 'The id to pass as modelId (checkpoints) or in embeddings (embeddings).' }),
    name: t.exposeString('name', { description: 'Human-readable name.' }),
    kind: t.field({ type: ModelKind, resolve: (m) => m.kind, description: 'Checkpoint or embedding.' }),
    baseModel: t.field({ type: BaseModel, resolve: (m) => m.baseModel, description: 'The model family.' }),
    description: t.exposeString('description', { nullable: true, description: 'What the model is for, if known.' }),
    aliases: t.exposeStringList('aliases', {
      description: 'Other ids that name this model; the default checkpoint answers to "sd1.5".',
    }),
    triggerWords: t.exposeStringList('triggerWords', {
      description: 'Embeddings: the words that invoke the embedding when written in the prompt or negative prompt. Empty for checkpoints.',
    }),
    vectors: t.exposeInt('vectors', {
      nullable: true,
      description: 'Embeddings: how many token vectors one trigger word expands to, when known.',
    }),
    inpainting: t.exposeBoolean('inpainting', {
      description: 'Checkpoints: true for a dedicated inpainting checkpoint (9-channel UNet).',
    }),
  }),
});

const ModelFilter = builder.inputType('ModelFilter', {
  description: 'Narrows the catalogue; absent fields do not filter.',
  fields: (t) => ({
    kind: t.field({ type: ModelKind, description: 'Only checkpoints, or only embeddings.' }),
    baseModel: t.field({ type: BaseModel, description: 'Only models of this family.' }),
  }),
});

builder.queryFields((t) => ({
  models: t.field({
    type: [Model],
    description: 'The model catalogue: base checkpoints and textual-inversion embeddings.',
    args: { filter: t.arg({ type: ModelFilter, description: 'Optional filter by kind and base model.' }) },
    resolve: (_, { filter }, ctx) => {
      authorized(ctx, 'models.read');
      return ctx.models.list({ kind: filter?.kind, baseModel: filter?.baseModel });
    },
  }),
  model: t.field({
    type: Model,
    nullable: true,
    description: 'One catalogue entry by id or alias; null if there is none.',
    args: { id: t.arg.id({ required: true, description: 'A model id or alias, such as "sd1.5".' }) },
    resolve: (_, { id }, ctx) => {
      authorized(ctx, 'models.read');
      return ctx.models.find(String(id));
    },
  }),
}));

/** Largest embedding upload accepted (real SD 1.5 embeddings are a few KB to a few hundred KB). */
const MAX_UPLOAD_BYTES = 16 * 1024 * 1024;

builder.mutationFields((t) => ({
  uploadEmbedding: t.field({
    type: Model,
    description:
      'Adds a textual-inversion embedding (.safetensors, or .pt/.bin in the common layouts; vectors 768 wide for SD 1.5). It is validated, stored, and usable by the next request: name its id in embeddings and write its trigger word in a prompt. Send as a multipart request.',
    args: {
      file: t.arg({ type: 'File', required: true, description: 'The embedding file.' }),
      name: t.arg.string({ required: true, description: 'A name for the catalogue.' }),
      triggerWord: t.arg.string({ required: true, description: 'The word that invokes it in a prompt; must not be taken.' }),
    },
    resolve: async (_, { file, name, triggerWord }, ctx) => {
      authorized(ctx, 'embeddings.upload');
      if (file.size > MAX_UPLOAD_BYTES) {
        throw new InputValidationError([{ path: ['file'], code: 'TOO_LARGE', message: `must be at most ${MAX_UPLOAD_BYTES} bytes` }]);
      }
      const data = Buffer.from(await file.arrayBuffer());
      return ctx.models.uploadEmbedding({ fileName: file.name, data, name, triggerWord });
    },
  }),
}));
