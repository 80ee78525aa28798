import { NOISE_SOURCES, type NoiseSourceName } from '../generation/request.js';
import { builder } from './builder.js';

const NOISE_SOURCE_DESCRIPTIONS: Record<NoiseSourceName, string> = {
  torch:
    'torch.randn with a CPU torch.Generator seeded by manual_seed(seed): the noise ComfyUI, and diffusers with a CPU generator, draw for a seed.',
  numpy: "numpy's legacy numpy.random.RandomState(seed).randn: the noise diffusers' ONNX pipelines draw for a seed.",
};

export const NoiseSource = builder.enumType('NoiseSource', {
  description:
    "Whose random generator a job's seed drives, so that the same seed gives the same images as that software (the local engine's is LOCAL_NOISE, TORCH unless configured).",
  values: Object.fromEntries(NOISE_SOURCES.map((n) => [n.toUpperCase(), { value: n, description: NOISE_SOURCE_DESCRIPTIONS[n] }])) as {
    [K in NoiseSourceName as Uppercase<K>]: { value: K; description: string };
  },
});
