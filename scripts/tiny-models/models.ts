/**
 * Tiny random-weight ONNX models with the I/O of diffusers' SD 1.5 ONNX export
 * (scripts/convert_stable_diffusion_checkpoint_to_onnx.py). Weights come from a seeded PRNG, so
 * the encoded bytes are identical across runs and platforms.
 */
import { TensorDataType as DT, type ModelProto } from '../../src/diffusion/onnx/proto.js';
import { GraphBuilder, Prng } from './graph.js';

export const OPSET = 17;

/** Name of the token-embedding initializer, as in the real CLIP text-encoder export. */
export const TOKEN_EMBEDDING_NAME = 'text_model.embeddings.token_embedding.weight';
export const POSITION_EMBEDDING_NAME = 'text_model.embeddings.position_embedding.weight';

/** Safety checker: flagged iff mean(clip_input) · SAFETY_WEIGHT + SAFETY_BIAS > 0, i.e. mean > 1. */
export const SAFETY_WEIGHT = 1;
export const SAFETY_BIAS = -1;

export interface TinyTextEncoderOptions {
  seed: number;
  vocabSize: number;
  hiddenSize: number;
  maxPositions?: number;
}

/**
 * text_encoder: input_ids int32 [batch, sequence] → last_hidden_state float [batch, sequence, D],
 * pooler_output float [batch, D] (hidden state at the argmax id = the EOS token, as CLIP does).
 */
export function buildTinyTextEncoder(o: TinyTextEncoderOptions): ModelProto {
  const D = o.hiddenSize;
  const P = o.maxPositions ?? 77;
  const rng = new Prng(o.seed);
  const g = new GraphBuilder();
  const ids = g.input('input_ids', DT.INT32, ['batch', 'sequence']);
  g.output('last_hidden_state', DT.FLOAT, ['batch', 'sequence', D]);
  g.output('pooler_output', DT.FLOAT, ['batch', D]);

  const tokEmb = g.weight(TOKEN_EMBEDDING_NAME, [o.vocabSize, D], rng.floats(o.vocabSize * D, 1));
  const posEmb = g.weight(POSITION_EMBEDDING_NAME, [P, D], rng.floats(P * D, 0.2));
  const tok = g.op('Gather', [tokEmb, ids], { axis: 0 });
  const seqLen = g.op('Shape', [ids], { start: 1, end: 2 });
  const pos = g.op('Slice', [posEmb, g.constI([0]), seqLen, g.constI([0])]);
  const x = g.op('Add', [tok, pos]);

  const ln1 = g.op(
    'LayerNormalization',
    [
      x,
      g.weight('text_model.encoder.layers.0.layer_norm1.weight', [D], new Float32Array(D).fill(1)),
      g.weight('text_model.encoder.layers.0.layer_norm1.bias', [D], new Float32Array(D)),
    ],
    { axis: -1, epsilon: { float: 1e-5 } },
  );
  const fc = g.op('MatMul', [ln1, g.weight('text_model.encoder.layers.0.mlp.fc1.weight', [D, D], rng.floats(D * D, 1 / Math.sqrt(D)))]);
  const fcb = g.op('Add', [fc, g.weight('text_model.encoder.layers.0.mlp.fc1.bias', [D], rng.floats(D, 0.1))]);
  const act = g.op('Tanh', [fcb]);
  const x2 = g.op('Add', [x, act]);
  const last = g.op(
    'LayerNormalization',
    [
      x2,
      g.weight('text_model.final_layer_norm.weight', [D], new Float32Array(D).fill(1)),
      g.weight('text_model.final_layer_norm.bias', [D], new Float32Array(D)),
    ],
    { axis: -1, epsilon: { float: 1e-5 } },
    'last_hidden_state',
  );

  const idsF = g.op('Cast', [ids], { to: DT.FLOAT });
  const eos = g.op('ArgMax', [idsF], { axis: 1, keepdims: 0 });
  const eos2 = g.op('Unsqueeze', [eos, g.constI([1])]);
  g.op('GatherND', [last, eos2], { batch_dims: 1 }, 'pooler_output');
  return g.model('text_encoder', OPSET);
}

export interface TinyUnetOptions {
  seed: number;
  hiddenSize: number;
  /** 4 (text2img) or 9 (inpainting: latents 4 + mask 1 + masked-image latents 4). */
  inChannels?: number;
  channels?: number;
  /** Element type of `timestep` (default int64). */
  timestepType?: 'int64' | 'float32';
  /** Declared shape of `timestep`: ['batch'] (default), [] (scalar) or none (any rank ≤ 1). */
  timestepShape?: 'batch' | 'scalar' | 'unspecified';
}

/**
 * unet: sample float [batch, C_in, height, width], timestep int64|float, encoder_hidden_states
 * float [batch, sequence, D] → out_sample float [batch, 4, height, width].
 * conv_in 3×3 → + MLP(sinusoidal(timestep)) → Tanh → + cross-attention(queries: pixels,
 * keys/values: encoder_hidden_states, Softmax over the sequence) → conv_out 3×3.
 */
export function buildTinyUnet(o: TinyUnetOptions): ModelProto {
  const D = o.hiddenSize;
  const Cin = o.inChannels ?? 4;
  const C = o.channels ?? 32;
  const A = 16; // attention width
  const F = 32; // sinusoidal embedding size
  const rng = new Prng(o.seed);
  const g = new GraphBuilder();
  const sample = g.input('sample', DT.FLOAT, ['batch', 'channels', 'height', 'width']);
  const tsType = (o.timestepType ?? 'int64') === 'int64' ? DT.INT64 : DT.FLOAT;
  const tsShape = o.timestepShape ?? 'batch';
  const timestep = g.input('timestep', tsType, tsShape === 'batch' ? ['batch'] : tsShape === 'scalar' ? [] : undefined);
  const ehs = g.input('encoder_hidden_states', DT.FLOAT, ['batch', 'sequence', D]);
  g.output('out_sample', DT.FLOAT, ['batch', 4, 'height', 'width']);

  const conv = (x: string, name: string, cout: number, cin: number, k: number, std: number, out?: string): string =>
    g.op(
      'Conv',
      [
        x,
        g.weight(`${name}.weight`, [cout, cin, k, k], rng.floats(cout * cin * k * k, std)),
        g.weight(`${name}.bias`, [cout], rng.floats(cout, 0.05)),
      ],
      { kernel_shape: [k, k], pads: [k >> 1, k >> 1, k >> 1, k >> 1] },
      out,
    );
  const linear = (x: string, name: string, cin: number, cout: number, std: number, bias = true): string => {
    const m = g.op('MatMul', [x, g.weight(`${name}.weight`, [cin, cout], rng.floats(cin * cout, std))]);
    return bias ? g.op('Add', [m, g.weight(`${name}.bias`, [cout], rng.floats(cout, 0.05))]) : m;
  };

  let h = conv(sample, 'conv_in', C, Cin, 3, 1 / Math.sqrt(Cin * 9));

  // Timestep embedding: sinusoidal(t) → Linear → SiLU → Linear, broadcast over pixels.
  const half = F / 2;
  const freqs: number[] = [];
  for (let i = 0; i < half; i++) freqs.push(Math.exp((-Math.log(10000) * i) / half));
  const tF = g.op('Cast', [timestep], { to: DT.FLOAT });
  const t2 = g.op('Reshape', [tF, g.constI([-1, 1])]);
  const arg = g.op('Mul', [t2, g.constF(freqs, [1, half])]);
  const sincos = g.op('Concat', [g.op('Sin', [arg]), g.op('Cos', [arg])], { axis: 1 });
  const e1 = linear(sincos, 'time_embedding.linear_1', F, C, 1 / Math.sqrt(F));
  const e1act = g.op('Mul', [e1, g.op('Sigmoid', [e1])]);
  const e2 = linear(e1act, 'time_embedding.linear_2', C, C, 1 / Math.sqrt(C));
  const e4 = g.op('Unsqueeze', [e2, g.constI([2, 3])]);
  h = g.op('Tanh', [g.op('Add', [h, e4])]);

  // Cross-attention.
  const attn = 'down_blocks.0.attentions.0.transformer_blocks.0.attn2';
  const hShape = g.op('Shape', [h]);
  const flat = g.op('Reshape', [h, g.constI([0, 0, -1])]);
  const tokens = g.op('Transpose', [flat], { perm: [0, 2, 1] }); // [B, N, C]
  const q = linear(tokens, `${attn}.to_q`, C, A, 1 / Math.sqrt(C), false);
  const k = linear(ehs, `${attn}.to_k`, D, A, 1 / Math.sqrt(D), false);
  const v = linear(ehs, `${attn}.to_v`, D, C, 1 / Math.sqrt(D), false);
  const scores = g.op('Mul', [g.op('MatMul', [q, g.op('Transpose', [k], { perm: [0, 2, 1] })]), g.constF([1 / Math.sqrt(A)], [])]);
  const probs = g.op('Softmax', [scores], { axis: -1 });
  const ctx = g.op('MatMul', [probs, v]); // [B, N, C]
  const proj = linear(ctx, `${attn}.to_out.0`, C, C, 1 / Math.sqrt(C));
  const back = g.op('Reshape', [g.op('Transpose', [proj], { perm: [0, 2, 1] }), hShape]);
  h = g.op('Add', [h, back]);

  conv(h, 'conv_out', 4, C, 3, 1 / Math.sqrt(C * 9), 'out_sample');
  return g.model('unet', OPSET);
}

export interface TinyVaeOptions {
  seed: number;
  channels?: number;
}

/** vae_encoder: sample float [batch, 3, height, width] → latent_sample float [batch, 4, height/8, width/8]. */
export function buildTinyVaeEncoder(o: TinyVaeOptions): ModelProto {
  const C = o.channels ?? 16;
  const rng = new Prng(o.seed);
  const g = new GraphBuilder();
  const x = g.input('sample', DT.FLOAT, ['batch', 'channels', 'height', 'width']);
  g.output('latent_sample', DT.FLOAT, ['batch', 4, 'latent_height', 'latent_width']);
  const h = g.op(
    'Conv',
    [
      x,
      g.weight('encoder.conv_in.weight', [C, 3, 8, 8], rng.floats(C * 192, 1 / Math.sqrt(192))),
      g.weight('encoder.conv_in.bias', [C], rng.floats(C, 0.05)),
    ],
    {
      kernel_shape: [8, 8],
      strides: [8, 8],
    },
  );
  const a = g.op('Tanh', [h]);
  // Real SD latents have std ≈ 5 (hence the 0.18215 scaling factor); mimic roughly.
  g.op(
    'Conv',
    [
      a,
      g.weight('quant_conv.weight', [4, C, 1, 1], rng.floats(4 * C, 4 / Math.sqrt(C))),
      g.weight('quant_conv.bias', [4], rng.floats(4, 0.05)),
    ],
    { kernel_shape: [1, 1] },
    'latent_sample',
  );
  return g.model('vae_encoder', OPSET);
}

/** vae_decoder: latent_sample float [batch, 4, h, w] → sample float [batch, 3, 8h, 8w], values in (-1, 1). */
export function buildTinyVaeDecoder(o: TinyVaeOptions): ModelProto {
  const C = o.channels ?? 16;
  const rng = new Prng(o.seed);
  const g = new GraphBuilder();
  const z = g.input('latent_sample', DT.FLOAT, ['batch', 'channels', 'height', 'width']);
  g.output('sample', DT.FLOAT, ['batch', 3, 'image_height', 'image_width']);
  const h = g.op(
    'Conv',
    [
      z,
      g.weight('post_quant_conv.weight', [C, 4, 1, 1], rng.floats(C * 4, 0.15)),
      g.weight('post_quant_conv.bias', [C], rng.floats(C, 0.05)),
    ],
    { kernel_shape: [1, 1] },
  );
  const a = g.op('Tanh', [h]);
  const up = g.op(
    'ConvTranspose',
    [
      a,
      g.weight('decoder.conv_out.weight', [C, 3, 8, 8], rng.floats(C * 3 * 64, 1 / Math.sqrt(C))),
      g.weight('decoder.conv_out.bias', [3], rng.floats(3, 0.05)),
    ],
    {
      kernel_shape: [8, 8],
      strides: [8, 8],
    },
  );
  g.op('Tanh', [up], {}, 'sample');
  return g.model('vae_decoder', OPSET);
}

/**
 * safety_checker: clip_input float [batch, 3, 224, 224], images float [batch, H, W, 3] →
 * out_images float [batch, H, W, 3] (flagged images zeroed, as diffusers' forward_onnx does),
 * has_nsfw_concepts bool [batch]. Flagged iff mean(clip_input) > 1: with CLIP normalization
 * ((x − 0.48)/0.27) a mostly white image (mean ≈ 1.9) is flagged, black/grey/typical images are not.
 */
export function buildTinySafetyChecker(): ModelProto {
  const g = new GraphBuilder();
  const clip = g.input('clip_input', DT.FLOAT, ['batch', 'channels', 'height', 'width']);
  const images = g.input('images', DT.FLOAT, ['batch', 'height', 'width', 'channels']);
  g.output('out_images', DT.FLOAT, ['batch', 'height', 'width', 'channels']);
  g.output('has_nsfw_concepts', DT.BOOL, ['batch']);
  const mean = g.op('ReduceMean', [clip], { axes: [1, 2, 3], keepdims: 0 });
  const score = g.op('Add', [
    g.op('Mul', [mean, g.weight('concept_head.weight', [], [SAFETY_WEIGHT])]),
    g.weight('concept_head.bias', [], [SAFETY_BIAS]),
  ]);
  const flag = g.op('Greater', [score, g.constF([0], [])], {}, 'has_nsfw_concepts');
  const flag4 = g.op('Reshape', [flag, g.constI([-1, 1, 1, 1])]);
  g.op('Where', [flag4, g.constF([0], []), images], {}, 'out_images');
  return g.model('safety_checker', OPSET);
}
