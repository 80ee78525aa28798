/**
 * Generates the tiny SD 1.5 ONNX pipelines used by tests and the out-of-the-box start.
 *
 *   tsx scripts/models-tiny.ts [OUT_DIR] [--inpainting-dir DIR | --no-inpainting]
 *                              [--external-data] [--timestep int64|float32] [--seed N]
 *
 * OUT_DIR defaults to ./data/models/tiny; the inpainting pipeline (9-channel UNet) goes to a
 * sibling `<OUT_DIR>-inpainting` (./data/models/tiny-inpainting by default).
 */
import { basename, dirname, join, resolve } from 'node:path';
import { generateTinyPipeline, type TinyPipelineOptions } from './tiny-models/generate.js';

function usage(message?: string): never {
  if (message) console.error(message);
  console.error(
    'usage: tsx scripts/models-tiny.ts [OUT_DIR] [--inpainting-dir DIR | --no-inpainting] [--external-data] [--timestep int64|float32] [--seed N]',
  );
  process.exit(2);
}

const args = process.argv.slice(2);
let outDir = './data/models/tiny';
let inpaintingDir: string | undefined;
let inpainting = true;
const options: TinyPipelineOptions = {};
for (let i = 0; i < args.length; i++) {
  const a = args[i]!;
  const next = (): string => args[++i] ?? usage(`${a} needs a value`);
  switch (a) {
    case '--inpainting-dir':
      inpaintingDir = next();
      break;
    case '--no-inpainting':
      inpainting = false;
      break;
    case '--external-data':
      options.externalData = true;
      break;
    case '--timestep': {
      const v = next();
      if (v !== 'int64' && v !== 'float32') usage(`bad --timestep ${v}`);
      options.timestepType = v;
      break;
    }
    case '--seed': {
      const v = Number(next());
      if (!Number.isInteger(v)) usage('bad --seed');
      options.seed = v;
      break;
    }
    case '-h':
    case '--help':
      usage();
      break;
    default:
      if (a.startsWith('-')) usage(`unknown option ${a}`);
      outDir = a;
  }
}

const started = performance.now();
const out = resolve(outDir);
const files = await generateTinyPipeline(out, options);
console.log(`wrote ${files.length} files to ${out}`);
if (inpainting) {
  const dir = resolve(inpaintingDir ?? join(dirname(out), `${basename(out)}-inpainting`));
  const n = await generateTinyPipeline(dir, { ...options, inpainting: true });
  console.log(`wrote ${n.length} files to ${dir}`);
}
console.log(`done in ${Math.round(performance.now() - started)} ms`);
