/**
 * Tiny SD 1.5 ONNX pipeline generator: writes a directory in the layout of diffusers'
 * OnnxStableDiffusionPipeline export (model_index.json, scheduler/, tokenizer/, feature_extractor/,
 * text_encoder/, unet/, vae_encoder/, vae_decoder/, safety_checker/) with tiny random-weight
 * models, plus textual-inversion test embeddings under embeddings/. Deterministic bytes.
 */
import { mkdir, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { encodeModel, setExternalData, type ModelProto } from '../../src/diffusion/onnx/proto.js';
import { Prng } from './graph.js';
import { buildTinySafetyChecker, buildTinyTextEncoder, buildTinyUnet, buildTinyVaeDecoder, buildTinyVaeEncoder } from './models.js';
import { encodeSafetensors } from './safetensors.js';
import { torchSaveBytes } from './torch-writers.js';
import { buildTinyTokenizer, specialTokensMapJson, tokenizerConfigJson } from './tokenizer.js';

export interface TinyPipelineOptions {
  /** PRNG seed for all weights (default 1234). */
  seed?: number;
  /** Text hidden size D (default 32). */
  hiddenSize?: number;
  /** UNet width (default 32). */
  unetChannels?: number;
  /** 9-channel inpainting UNet and OnnxStableDiffusionInpaintPipeline model_index (default false). */
  inpainting?: boolean;
  /** Element type of the UNet `timestep` input (default 'int64'). */
  timestepType?: 'int64' | 'float32';
  /** Declared shape of `timestep` (default 'batch' = ['batch'], as the diffusers export). */
  timestepShape?: 'batch' | 'scalar' | 'unspecified';
  /** Write UNet weights as external data: unet/model.onnx + unet/weights.pb (default false). */
  externalData?: boolean;
  /** Write embeddings/*.safetensors (default true). */
  embeddings?: boolean;
}

export const TINY_DEFAULTS = {
  seed: 1234,
  hiddenSize: 32,
  unetChannels: 32,
} as const;

/** Textual-inversion test files written under embeddings/. */
export const TINY_EMBEDDINGS = {
  /** {"<tiny-single>": F32 [1, D]} */
  single: { file: 'tiny-single.safetensors', token: '<tiny-single>', vectors: 1 },
  /** {"emb_params": F32 [2, D]} (A1111 safetensors layout; the token comes from the file name) */
  embParams: { file: 'tiny-emb-params.safetensors', token: 'emb_params', vectors: 2 },
  /** {"<tiny-multi>": F32 [3, D]} */
  multi: { file: 'tiny-multi.safetensors', token: '<tiny-multi>', vectors: 3 },
  /** torch.save of A1111's layout: {string_to_param: {"*": Parameter [2, D]}, name, step} */
  a1111: { file: 'tiny-a1111.pt', token: 'tiny-a1111', vectors: 2 },
  /** torch.save of diffusers' layout: {"<tiny-diffusers>": tensor [1, D]} */
  diffusers: { file: 'tiny-diffusers.bin', token: '<tiny-diffusers>', vectors: 1 },
} as const;

/** Size threshold (bytes) above which initializers go to weights.pb, as onnx.save's default. */
const EXTERNAL_THRESHOLD = 1024;
const EXTERNAL_FILE = 'weights.pb';

const json = (v: unknown): Uint8Array => new TextEncoder().encode(`${JSON.stringify(v, null, 2)}\n`);

/** Moves large initializers to one external file; returns that file's bytes. */
function externalize(model: ModelProto): Uint8Array {
  const chunks: Uint8Array[] = [];
  let offset = 0;
  for (const t of model.graph!.initializer) {
    const raw = t.raw_data;
    if (!raw || raw.length < EXTERNAL_THRESHOLD) continue;
    setExternalData(t, EXTERNAL_FILE, offset, raw.length);
    chunks.push(raw);
    offset += raw.length;
  }
  const out = new Uint8Array(offset);
  let o = 0;
  for (const c of chunks) {
    out.set(c, o);
    o += c.length;
  }
  return out;
}

/** Builds every file of the tiny pipeline in memory: relative path (POSIX) → bytes. */
export function buildTinyPipelineFiles(options: TinyPipelineOptions = {}): Map<string, Uint8Array> {
  const seed = options.seed ?? TINY_DEFAULTS.seed;
  const D = options.hiddenSize ?? TINY_DEFAULTS.hiddenSize;
  const files = new Map<string, Uint8Array>();
  const inpainting = options.inpainting ?? false;

  files.set(
    'model_index.json',
    json({
      _class_name: inpainting ? 'OnnxStableDiffusionInpaintPipeline' : 'OnnxStableDiffusionPipeline',
      _diffusers_version: '0.6.0',
      feature_extractor: ['transformers', 'CLIPImageProcessor'],
      requires_safety_checker: true,
      safety_checker: ['diffusers', 'OnnxRuntimeModel'],
      scheduler: ['diffusers', 'PNDMScheduler'],
      text_encoder: ['diffusers', 'OnnxRuntimeModel'],
      tokenizer: ['transformers', 'CLIPTokenizer'],
      unet: ['diffusers', 'OnnxRuntimeModel'],
      vae_decoder: ['diffusers', 'OnnxRuntimeModel'],
      vae_encoder: ['diffusers', 'OnnxRuntimeModel'],
    }),
  );
  files.set(
    'scheduler/scheduler_config.json',
    json({
      _class_name: 'PNDMScheduler',
      _diffusers_version: '0.6.0',
      beta_end: 0.012,
      beta_schedule: 'scaled_linear',
      beta_start: 0.00085,
      clip_sample: false,
      num_train_timesteps: 1000,
      prediction_type: 'epsilon',
      set_alpha_to_one: false,
      skip_prk_steps: true,
      steps_offset: 1,
      trained_betas: null,
    }),
  );
  files.set(
    'feature_extractor/preprocessor_config.json',
    json({
      crop_size: { height: 224, width: 224 },
      do_center_crop: true,
      do_convert_rgb: true,
      do_normalize: true,
      do_rescale: true,
      do_resize: true,
      image_mean: [0.48145466, 0.4578275, 0.40821073],
      image_processor_type: 'CLIPImageProcessor',
      image_std: [0.26862954, 0.26130258, 0.27577711],
      resample: 3,
      rescale_factor: 0.00392156862745098,
      size: { shortest_edge: 224 },
    }),
  );

  const tok = buildTinyTokenizer();
  files.set('tokenizer/vocab.json', json(tok.vocab));
  files.set('tokenizer/merges.txt', new TextEncoder().encode(`#version: 0.2\n${tok.merges.join('\n')}\n`));
  files.set('tokenizer/tokenizer_config.json', json(tokenizerConfigJson()));
  files.set('tokenizer/special_tokens_map.json', json(specialTokensMapJson()));

  const vocabSize = Object.keys(tok.vocab).length;
  files.set('text_encoder/model.onnx', encodeModel(buildTinyTextEncoder({ seed: seed + 1, vocabSize, hiddenSize: D })));

  const unet = buildTinyUnet({
    seed: seed + 2,
    hiddenSize: D,
    inChannels: inpainting ? 9 : 4,
    channels: options.unetChannels ?? TINY_DEFAULTS.unetChannels,
    timestepType: options.timestepType ?? 'int64',
    timestepShape: options.timestepShape ?? 'batch',
  });
  if (options.externalData) files.set(`unet/${EXTERNAL_FILE}`, externalize(unet));
  files.set('unet/model.onnx', encodeModel(unet));

  files.set('vae_encoder/model.onnx', encodeModel(buildTinyVaeEncoder({ seed: seed + 3 })));
  files.set('vae_decoder/model.onnx', encodeModel(buildTinyVaeDecoder({ seed: seed + 4 })));
  files.set('safety_checker/model.onnx', encodeModel(buildTinySafetyChecker()));

  if (options.embeddings ?? true) {
    const rng = new Prng(seed + 5);
    for (const e of Object.values(TINY_EMBEDDINGS)) {
      const data = rng.floats(e.vectors * D, 1);
      const tensor = (parameter: boolean) => ({ tensor: { dtype: 'F32' as const, shape: [e.vectors, D], storage: [...data], parameter } });
      let bytes: Uint8Array;
      if (e.file.endsWith('.safetensors')) {
        bytes = encodeSafetensors({ [e.token]: { shape: [e.vectors, D], data } }, { format: 'pt' });
      } else if (e === TINY_EMBEDDINGS.a1111) {
        bytes = torchSaveBytes({
          dict: [
            ['string_to_token', { dict: [['*', 265]] }],
            ['string_to_param', { dict: [['*', tensor(true)]] }],
            ['name', e.token],
            ['step', 1000],
          ],
        });
      } else {
        bytes = torchSaveBytes({ dict: [[e.token, tensor(false)]] });
      }
      files.set(`embeddings/${e.file}`, bytes);
    }
  }
  return files;
}

/** Writes the tiny pipeline under `outDir`; returns the written relative paths. */
export async function generateTinyPipeline(outDir: string, options: TinyPipelineOptions = {}): Promise<string[]> {
  const files = buildTinyPipelineFiles(options);
  for (const [rel, bytes] of files) {
    const path = join(outDir, rel);
    await mkdir(dirname(path), { recursive: true });
    await writeFile(path, bytes);
  }
  return [...files.keys()];
}
