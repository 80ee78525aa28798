/**
 * The fallback safety check for checkpoints that ship no safety_checker: nsfwjs's MobileNetV2
 * classifier, whose weights come inside the npm package, run on TensorFlow.js's pure-JS CPU
 * backend (no native download). Loaded on first use; about 2 s to load, 1-2 s per image on CPU.
 */

export interface NsfwScores {
  Porn: number;
  Hentai: number;
  Sexy: number;
  Neutral: number;
  Drawing: number;
}

/** Flag when explicit classes together pass this probability (Sexy alone is not explicit). */
export const EXPLICIT_THRESHOLD = 0.5;

export function isExplicit(scores: NsfwScores, threshold = EXPLICIT_THRESHOLD): boolean {
  return scores.Porn + scores.Hentai >= threshold;
}

type Classify = (rgb: Uint8Array, width: number, height: number) => Promise<NsfwScores>;
let classifier: Promise<Classify> | null = null;

/** Scores one RGB image (HWC, 8-bit). */
export function classifyNsfw(rgb: Uint8Array, width: number, height: number): Promise<NsfwScores> {
  classifier ??= loadClassifier();
  return classifier.then((classify) => classify(rgb, width, height));
}

async function loadClassifier(): Promise<Classify> {
  const tf = await import('@tensorflow/tfjs');
  const nsfwjs = await import('nsfwjs');
  await tf.setBackend('cpu');
  const model = await nsfwjs.load('MobileNetV2');
  return async (rgb, width, height) => {
    const image = tf.tensor3d(Int32Array.from(rgb), [height, width, 3], 'int32');
    try {
      const predictions = await model.classify(image, 5);
      const scores: NsfwScores = { Porn: 0, Hentai: 0, Sexy: 0, Neutral: 0, Drawing: 0 };
      for (const p of predictions) scores[p.className as keyof NsfwScores] = p.probability;
      return scores;
    } finally {
      image.dispose();
    }
  };
}
