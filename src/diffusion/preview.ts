import type { PredictionType } from './schedulers/config.js';

/**
 * Live previews without the VAE: the denoised estimate (x0) of the first sample, mapped from the
 * 4 latent channels to RGB by a fixed linear map. The factors are the approximation SD tools use
 * for SD 1.x previews (ComfyUI's and A1111's "approx cheap"); a preview costs one pass over the
 * latents instead of a VAE decode, at 1/8 of the image's size.
 */
const LATENT_RGB: readonly (readonly [number, number, number])[] = [
  [0.3512, 0.2297, 0.3227],
  [0.325, 0.4974, 0.235],
  [-0.2829, 0.1762, 0.2721],
  [-0.212, -0.2616, -0.7177],
];

/** A preview image: RGB bytes, row-major, at the latents' size. */
export interface PreviewPixels {
  rgb: Uint8Array;
  width: number;
  height: number;
}

/**
 * The first sample's x0 as RGB. `scaled` is the UNet's input (the sample in variance-preserving
 * form for every scheduler), `modelOutput` the guided prediction, `sigma` the step's noise level
 * (sqrt((1 - alphaBar) / alphaBar)).
 */
export function previewPixels(
  scaled: Float32Array,
  modelOutput: Float32Array,
  sigma: number,
  predictionType: PredictionType,
  height: number,
  width: number,
): PreviewPixels {
  const plane = height * width;
  const sqrtAlpha = 1 / Math.sqrt(1 + sigma * sigma);
  const sqrtBeta = sigma * sqrtAlpha;
  const rgb = new Uint8Array(plane * 3);
  for (let p = 0; p < plane; p++) {
    let r = 0;
    let g = 0;
    let b = 0;
    for (let c = 0; c < 4; c++) {
      const x = scaled[c * plane + p]!;
      const m = modelOutput[c * plane + p]!;
      const x0 = predictionType === 'v_prediction' ? sqrtAlpha * x - sqrtBeta * m : (x - sqrtBeta * m) / sqrtAlpha;
      const f = LATENT_RGB[c]!;
      r += x0 * f[0];
      g += x0 * f[1];
      b += x0 * f[2];
    }
    rgb[p * 3] = toByte(r);
    rgb[p * 3 + 1] = toByte(g);
    rgb[p * 3 + 2] = toByte(b);
  }
  return { rgb, width, height };
}

/** [-1, 1] to a byte, clamped. */
function toByte(v: number): number {
  return Math.round(Math.min(1, Math.max(0, (v + 1) / 2)) * 255);
}
