/**
 * npm run --silent noise -- --seed S --shape N,C,H,W [--source torch|numpy]
 *
 * Draws one tensor of standard-normal noise as the local engine does and prints one JSON object:
 * {"source","seed","shape","first","last","sum","sumsq"}: the first and last 16 values (all of
 * them for fewer than 16) as the float32 values' doubles, and the sum and sum of squares over the
 * whole tensor accumulated in float64. Compare with torch.randn(shape,
 * generator=torch.Generator("cpu").manual_seed(S)) or np.random.RandomState(S).randn(*shape).
 * Bad arguments: a message on stderr and exit code 2.
 */
import { createNoise, isNoiseSourceName, MAX_SEED, NOISE_SOURCES, type NoiseSourceName } from '../src/diffusion/noise/index.js';

/** The largest tensor the command draws (a 4 x 4 x 256 x 256 batch is 1,048,576). */
const MAX_ELEMENTS = 1 << 28;

const USAGE = `usage: npm run --silent noise -- --seed S --shape N,C,H,W [--source ${NOISE_SOURCES.join('|')}]`;

class UsageError extends Error {}

interface Args {
  seed: number;
  shape: number[];
  source: NoiseSourceName;
}

function parseArgs(argv: readonly string[]): Args {
  const values = new Map<string, string>();
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!;
    const eq = arg.indexOf('=');
    const name = eq >= 0 ? arg.slice(0, eq) : arg;
    if (!['--seed', '--shape', '--source'].includes(name)) throw new UsageError(`unknown argument ${JSON.stringify(arg)}`);
    let value: string | undefined;
    if (eq >= 0) value = arg.slice(eq + 1);
    else {
      value = argv[i + 1];
      i++;
    }
    if (value === undefined) throw new UsageError(`${name} needs a value`);
    if (values.has(name)) throw new UsageError(`${name} given twice`);
    values.set(name, value);
  }

  const seedText = values.get('--seed');
  if (seedText === undefined) throw new UsageError('--seed is required: an integer from 0 to ' + MAX_SEED);
  if (!/^\d+$/.test(seedText) || Number(seedText) > MAX_SEED) {
    throw new UsageError(`--seed must be an integer from 0 to ${MAX_SEED}, got ${JSON.stringify(seedText)}`);
  }

  const shapeText = values.get('--shape');
  if (shapeText === undefined) throw new UsageError('--shape is required: positive integers separated by commas, e.g. 1,4,64,64');
  const dims = shapeText.split(',');
  if (!dims.every((d) => /^[1-9]\d*$/.test(d.trim()))) {
    throw new UsageError(`--shape must be positive integers separated by commas (e.g. 1,4,64,64), got ${JSON.stringify(shapeText)}`);
  }
  const shape = dims.map((d) => Number(d.trim()));
  const numel = shape.reduce((a, b) => a * b, 1);
  if (numel > MAX_ELEMENTS) throw new UsageError(`--shape has ${numel} elements; at most ${MAX_ELEMENTS}`);

  const source = values.get('--source') ?? 'torch';
  if (!isNoiseSourceName(source))
    throw new UsageError(`--source must be one of ${NOISE_SOURCES.join(', ')}, got ${JSON.stringify(source)}`);

  return { seed: Number(seedText), shape, source };
}

function main(): void {
  let args: Args;
  try {
    args = parseArgs(process.argv.slice(2));
  } catch (err) {
    if (!(err instanceof UsageError)) throw err;
    process.stderr.write(`noise: ${err.message}\n${USAGE}\n`);
    process.exit(2);
  }
  const numel = args.shape.reduce((a, b) => a * b, 1);
  const values = createNoise(args.source, args.seed).randn(numel);
  let sum = 0;
  let sumsq = 0;
  for (const v of values) {
    sum += v;
    sumsq += v * v;
  }
  const result = {
    source: args.source,
    seed: args.seed,
    shape: args.shape,
    first: Array.from(values.subarray(0, 16)),
    last: Array.from(values.subarray(Math.max(0, numel - 16))),
    sum,
    sumsq,
  };
  process.stdout.write(JSON.stringify(result) + '\n');
}

main();
