import { parseArgs, type ParseArgsConfig } from 'node:util';
import { JOB_MODES, type JobMode } from '../generation/request.js';
import { AuthError, UsageError } from './errors.js';

export const DEFAULT_URL = 'http://127.0.0.1:4000';

/** Where the server is and which key to send, from --url/--key or SD15_URL/SD15_API_KEY. */
export interface Connection {
  /** The server's base URL, without /graphql. */
  url: string;
  key: string;
}

/** What `generate` asks for, before local files are read. Absent fields take the server's defaults. */
export interface GenerateRequest {
  mode: JobMode;
  prompt: string;
  negativePrompt?: string;
  /** A local file, or an http(s)/data: URL passed on as it is. */
  init?: string;
  mask?: string;
  modelId?: string;
  embeddings?: string[];
  numInferenceSteps?: number;
  guidanceScale?: number;
  width?: number;
  height?: number;
  seed?: number;
  samples?: number;
  strength?: number;
  maskBlur?: number;
  keepUnmasked?: boolean;
  scheduler?: string;
}

export type Command =
  /** requested: asked for (--help, help) rather than shown because no command was given. */
  | { name: 'help'; requested: boolean }
  | { name: 'generate'; connection: Connection; request: GenerateRequest; outDir: string; json: boolean }
  | { name: 'watch'; connection: Connection; id: string; outDir: string; json: boolean }
  | { name: 'jobs'; connection: Connection; first?: number; after?: string; json: boolean }
  | { name: 'models'; connection: Connection; json: boolean }
  | { name: 'cancel'; connection: Connection; id: string; json: boolean };

type CommandName = Exclude<Command['name'], 'help'>;

const OPTIONS = {
  url: { type: 'string' },
  key: { type: 'string' },
  json: { type: 'boolean' },
  help: { type: 'boolean', short: 'h' },
  out: { type: 'string', short: 'o' },
  negative: { type: 'string' },
  mode: { type: 'string' },
  init: { type: 'string' },
  mask: { type: 'string' },
  model: { type: 'string' },
  embedding: { type: 'string', multiple: true },
  steps: { type: 'string' },
  guidance: { type: 'string' },
  width: { type: 'string' },
  height: { type: 'string' },
  seed: { type: 'string' },
  samples: { type: 'string' },
  strength: { type: 'string' },
  'mask-blur': { type: 'string' },
  'keep-unmasked': { type: 'string' },
  scheduler: { type: 'string' },
  first: { type: 'string' },
  after: { type: 'string' },
} as const satisfies ParseArgsConfig['options'];

type OptionName = keyof typeof OPTIONS;

const COMMON: OptionName[] = ['url', 'key', 'json', 'help'];
const GENERATE: OptionName[] = [
  'out',
  'negative',
  'mode',
  'init',
  'mask',
  'model',
  'embedding',
  'steps',
  'guidance',
  'width',
  'height',
  'seed',
  'samples',
  'strength',
  'mask-blur',
  'keep-unmasked',
  'scheduler',
];

/** Which options each command takes: one parse for all, then anything another command's is refused. */
const COMMAND_OPTIONS: Record<CommandName, OptionName[]> = {
  generate: [...COMMON, ...GENERATE],
  watch: [...COMMON, 'out'],
  jobs: [...COMMON, 'first', 'after'],
  models: COMMON,
  cancel: COMMON,
};

/**
 * The option behind each input field, so the server's field errors can name what the user
 * typed. Fields are named as the server's issues name them, without the "input." prefix.
 */
const OPTION_FOR_FIELD: Record<string, string> = {
  prompt: 'PROMPT',
  negativePrompt: '--negative',
  initImage: '--init',
  maskImage: '--mask',
  modelId: '--model',
  embeddings: '--embedding',
  numInferenceSteps: '--steps',
  guidanceScale: '--guidance',
  width: '--width',
  height: '--height',
  seed: '--seed',
  samples: '--samples',
  strength: '--strength',
  maskBlur: '--mask-blur',
  keepUnmasked: '--keep-unmasked',
  scheduler: '--scheduler',
  after: '--after',
  first: '--first',
};

/** "input.numInferenceSteps" → "numInferenceSteps (--steps)". */
export function describeField(field: string): string {
  const name = field.replace(/^input\./, '');
  const option = OPTION_FOR_FIELD[name.split('.')[0]!];
  return option ? `${name} (${option})` : name;
}

export function parseCommand(argv: string[], env: NodeJS.ProcessEnv): Command {
  let parsed;
  try {
    parsed = parseArgs({ args: argv, options: OPTIONS, allowPositionals: true, strict: true });
  } catch (err) {
    // parseArgs explains itself ("Unknown option '--bogus'…"); its errors carry a code.
    throw new UsageError(err instanceof Error ? err.message : String(err));
  }
  const { values, positionals } = parsed;
  const [name, ...rest] = positionals;
  if (name === undefined) return { name: 'help', requested: values.help === true };
  if (name === 'help' || values.help) return { name: 'help', requested: true };
  if (!isCommandName(name)) throw new UsageError(`unknown command "${name}"`);

  const allowed = new Set(COMMAND_OPTIONS[name]);
  for (const option of Object.keys(values) as OptionName[]) {
    if (!allowed.has(option)) throw new UsageError(`--${option} is not an option of ${name}`);
  }
  const json = values.json === true;

  switch (name) {
    case 'generate': {
      if (rest.length === 0) throw new UsageError('generate needs a prompt: sd15 generate "a cottage in the woods"');
      if (rest.length > 1) throw new UsageError(`generate takes one prompt; quote it: sd15 generate "${rest.join(' ')}"`);
      return {
        name,
        connection: connection(values, env),
        request: generateRequest(rest[0]!, values),
        outDir: values.out ?? '.',
        json,
      };
    }
    case 'watch':
    case 'cancel': {
      if (rest.length !== 1) throw new UsageError(`${name} takes one job id: sd15 ${name} ID`);
      const id = rest[0]!;
      return name === 'watch'
        ? { name, connection: connection(values, env), id, outDir: values.out ?? '.', json }
        : { name, connection: connection(values, env), id, json };
    }
    case 'jobs':
      noPositionals(name, rest);
      return { name, connection: connection(values, env), first: integer('first', values.first), after: values.after, json };
    case 'models':
      noPositionals(name, rest);
      return { name, connection: connection(values, env), json };
  }
}

function isCommandName(name: string): name is CommandName {
  return Object.hasOwn(COMMAND_OPTIONS, name);
}

function noPositionals(command: string, rest: string[]): void {
  if (rest.length > 0) throw new UsageError(`${command} takes no arguments, got "${rest.join(' ')}"`);
}

type Values = ReturnType<typeof parseArgs<{ options: typeof OPTIONS; allowPositionals: true; strict: true }>>['values'];

function connection(values: Values, env: NodeJS.ProcessEnv): Connection {
  const url = (values.url ?? env.SD15_URL ?? DEFAULT_URL).trim();
  if (!/^https?:\/\/[^/]/i.test(url) || !URL.canParse(url)) throw new UsageError(`--url must be an http(s) URL, not "${url}"`);
  const key = values.key ?? env.SD15_API_KEY;
  if (!key) throw new AuthError('no API key: pass --key KEY or set SD15_API_KEY (the server prints one on its first start)');
  // Accept the GraphQL endpoint as well as the server's base URL.
  return { url: url.replace(/\/+$/, '').replace(/\/graphql$/, ''), key };
}

function generateRequest(prompt: string, values: Values): GenerateRequest {
  const mode = chooseMode(values);
  if (mode === 'text2image') {
    for (const option of ['init', 'mask', 'strength'] as const) {
      if (values[option] !== undefined) throw new UsageError(`--${option} is for image2image and inpainting, not text2image`);
    }
  } else if (values.init === undefined) {
    throw new UsageError(`${mode} needs an init image: --init FILE|URL`);
  }
  if (mode === 'image2image' && values.mask !== undefined) throw new UsageError('--mask is for inpainting: use --mode inpainting');
  if (mode === 'inpainting' && values.mask === undefined) throw new UsageError('inpainting needs a mask: --mask FILE|URL');
  if (mode !== 'inpainting') {
    for (const option of ['mask-blur', 'keep-unmasked'] as const) {
      if (values[option] !== undefined) throw new UsageError(`--${option} is for inpainting, not ${mode}`);
    }
  }
  return {
    mode,
    prompt,
    negativePrompt: values.negative,
    init: values.init,
    mask: values.mask,
    modelId: values.model,
    embeddings: values.embedding,
    numInferenceSteps: integer('steps', values.steps),
    guidanceScale: number('guidance', values.guidance),
    width: integer('width', values.width),
    height: integer('height', values.height),
    seed: integer('seed', values.seed),
    samples: integer('samples', values.samples),
    strength: number('strength', values.strength),
    maskBlur: integer('mask-blur', values['mask-blur']),
    keepUnmasked: yesNo('keep-unmasked', values['keep-unmasked']),
    // The server's enum is upper case; "euler_a" is what people type.
    scheduler: values.scheduler?.toUpperCase(),
  };
}

/** --mode, or what the images given imply: a mask means inpainting, an init image alone image2image. */
function chooseMode(values: Values): JobMode {
  if (values.mode === undefined) return values.mask !== undefined ? 'inpainting' : values.init !== undefined ? 'image2image' : 'text2image';
  const mode = values.mode.toLowerCase();
  if (!(JOB_MODES as readonly string[]).includes(mode)) {
    throw new UsageError(`--mode must be one of ${JOB_MODES.join(', ')}, not "${values.mode}"`);
  }
  return mode as JobMode;
}

function yesNo(option: OptionName, value: string | undefined): boolean | undefined {
  if (value === undefined) return undefined;
  const v = value.trim().toLowerCase();
  if (['yes', 'true', '1'].includes(v)) return true;
  if (['no', 'false', '0'].includes(v)) return false;
  throw new UsageError(`--${option} must be yes or no, not "${value}"`);
}

// Only the type is checked here; ranges are the server's rules, and its field errors say them.
function integer(option: OptionName, value: string | undefined): number | undefined {
  if (value === undefined) return undefined;
  if (!/^\s*[+-]?\d+\s*$/.test(value)) throw new UsageError(`--${option} must be a whole number, not "${value}"`);
  return Number(value);
}

function number(option: OptionName, value: string | undefined): number | undefined {
  if (value === undefined) return undefined;
  const parsed = Number(value);
  if (value.trim() === '' || !Number.isFinite(parsed)) throw new UsageError(`--${option} must be a number, not "${value}"`);
  return parsed;
}
