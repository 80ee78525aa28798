import type { JobMode, Scheduler } from '../../../src/client/generated/graphql';
import type { FullJob, GenerationRequest, JobWithSettings } from '../api/jobs-api';
import type { CatalogueModel } from '../key/use-session';

export type Mode = GenerationRequest['mode'];

export const MODES: { value: Mode; label: string }[] = [
  { value: 'text2image', label: 'Text to image' },
  { value: 'image2image', label: 'Image to image' },
  { value: 'inpainting', label: 'Inpainting' },
];

const MODE_OF_JOB: Record<JobMode, Mode> = { TEXT2IMAGE: 'text2image', IMAGE2IMAGE: 'image2image', INPAINTING: 'inpainting' };

/** The schema's Scheduler values, named for people; `satisfies` keeps the list complete when the schema grows. */
export const SCHEDULERS = {
  DPMPP_2M_KARRAS: 'DPM++ 2M Karras',
  EULER_A: 'Euler ancestral',
  EULER: 'Euler',
  DDIM: 'DDIM',
  PNDM: 'PNDM (PLMS)',
  LMS: 'LMS',
  HEUN: 'Heun',
  DPMPP_2M: 'DPM++ 2M',
  UNIPC: 'UniPC',
} as const satisfies Record<Scheduler, string>;

/**
 * An init image: a file to upload (picked or dropped), or a URL to send as it is (an http(s) URL, or
 * the data: URL of a reused job's image); what the page shows; its size (0 while unknown).
 */
export interface InitImage {
  file: File | null;
  /** What is shown, and sent when there is no file. */
  src: string;
  width: number;
  height: number;
  name: string;
}

/**
 * What the form holds. Numbers stay the text the person typed, so that what they typed is what
 * the server judges (a width of 65 is refused by the server, next to the Width field).
 */
export interface FormValues {
  mode: Mode;
  modelId: string;
  prompt: string;
  negativePrompt: string;
  embeddings: string[];
  numInferenceSteps: string;
  guidanceScale: string;
  width: string;
  height: string;
  samples: string;
  seed: string;
  strength: string;
  /** Inpainting: the blend edge in pixels, and whether the unmasked pixels stay the init image's. */
  maskBlur: string;
  keepUnmasked: boolean;
  scheduler: Scheduler | '';
  safetyChecker: boolean;
  initImage: InitImage | null;
  /** A mask to load into the painter (from a reused job); the painter holds the mask itself. */
  maskToLoad: string | null;
}

/** Refusals of the uploaded images name these fields; the form shows them at the image fields. */
const FIELD_OF_UPLOAD: Record<string, string> = { initImageFile: 'initImage', maskImageFile: 'maskImage' };

/** The form field a refusal's issue is about (its API name, or the image field of an upload); null if none. */
export function formFieldOf(issueField: string): FieldName | null {
  const field = FIELD_OF_UPLOAD[issueField] ?? issueField;
  return isFieldName(field) ? field : null;
}

/** The input fields the form has, by their names in the API (what a refusal's issues name). */
export type FieldName =
  | 'modelId'
  | 'prompt'
  | 'negativePrompt'
  | 'embeddings'
  | 'numInferenceSteps'
  | 'guidanceScale'
  | 'width'
  | 'height'
  | 'samples'
  | 'seed'
  | 'strength'
  | 'maskBlur'
  | 'keepUnmasked'
  | 'scheduler'
  | 'safetyChecker'
  | 'initImage'
  | 'maskImage';

export type FieldErrors = Partial<Record<FieldName, string>>;

const FIELD_NAMES = new Set<string>([
  'modelId',
  'prompt',
  'negativePrompt',
  'embeddings',
  'numInferenceSteps',
  'guidanceScale',
  'width',
  'height',
  'samples',
  'seed',
  'strength',
  'maskBlur',
  'keepUnmasked',
  'scheduler',
  'safetyChecker',
  'initImage',
  'maskImage',
]);

export const isFieldName = (name: string): name is FieldName => FIELD_NAMES.has(name);

export const DEFAULT_VALUES: FormValues = {
  mode: 'text2image',
  modelId: '',
  prompt: '',
  negativePrompt: '',
  embeddings: [],
  numInferenceSteps: '25',
  guidanceScale: '7.5',
  width: '512',
  height: '512',
  samples: '1',
  seed: '',
  strength: '0.8',
  maskBlur: '4',
  keepUnmasked: true,
  scheduler: '',
  safetyChecker: true,
  initImage: null,
  maskToLoad: null,
};

export const MAX_SEED = 2_147_483_647;

/**
 * The request for the mutation of the chosen mode, or the fields that are not numbers at all.
 * Ranges and rules are the server's to judge (its refusal names the field); only what cannot be
 * sent as the GraphQL type is caught here.
 */
export function buildRequest(values: FormValues, mask: File | null): { request: GenerationRequest } | { errors: FieldErrors } {
  const errors: FieldErrors = {};
  const int = (field: FieldName, text: string) => parseNumber(field, text, true, errors);
  const float = (field: FieldName, text: string) => parseNumber(field, text, false, errors);
  const seed = values.seed.trim() === '' ? undefined : int('seed', values.seed);
  if (seed !== undefined && (seed < 0 || seed > MAX_SEED)) errors.seed = `must be between 0 and ${MAX_SEED}, or empty for a random seed`;

  const common = {
    modelId: values.modelId || undefined,
    prompt: values.prompt,
    negativePrompt: values.negativePrompt,
    embeddings: values.embeddings,
    numInferenceSteps: int('numInferenceSteps', values.numInferenceSteps),
    guidanceScale: float('guidanceScale', values.guidanceScale),
    width: int('width', values.width),
    height: int('height', values.height),
    samples: int('samples', values.samples),
    seed,
    scheduler: values.scheduler || undefined,
    safetyChecker: values.safetyChecker,
  };
  const strength = values.mode === 'text2image' ? undefined : float('strength', values.strength);
  const maskBlur = values.mode === 'inpainting' ? int('maskBlur', values.maskBlur) : undefined;
  if (values.mode !== 'text2image' && !values.initImage) errors.initImage = 'choose an image file, drop one here, or give its URL';
  if (values.mode === 'inpainting' && !mask) errors.maskImage = 'paint over the part to repaint, or upload a mask';
  if (Object.keys(errors).length > 0) return { errors };

  // A file goes as an upload (GraphQL multipart), a URL as the string it is.
  const init = values.initImage?.file ? { initImageFile: values.initImage.file } : { initImage: values.initImage?.src };
  switch (values.mode) {
    case 'text2image':
      return { request: { mode: 'text2image', input: common } };
    case 'image2image':
      return { request: { mode: 'image2image', input: { ...common, ...init, strength } } };
    case 'inpainting':
      return {
        request: {
          mode: 'inpainting',
          input: { ...common, ...init, maskImageFile: mask, strength, maskBlur, keepUnmasked: values.keepUnmasked },
        },
      };
  }
}

function parseNumber(field: FieldName, text: string, integer: boolean, errors: FieldErrors): number | undefined {
  const trimmed = text.trim();
  const value = Number(trimmed);
  if (trimmed === '' || !Number.isFinite(value)) errors[field] = 'must be a number';
  else if (integer && !Number.isInteger(value)) errors[field] = 'must be a whole number';
  else return value;
  return undefined;
}

/** The form filled with a job's settings (its seed included, so the same request gives the same images). */
export function valuesFromJob(job: JobWithSettings | FullJob, current: FormValues): FormValues {
  const p = job.parameters;
  const initImage = 'initImage' in p ? p.initImage : null;
  const maskImage = 'maskImage' in p ? p.maskImage : null;
  return {
    ...current,
    mode: MODE_OF_JOB[job.mode],
    modelId: p.modelId,
    prompt: p.prompt,
    negativePrompt: p.negativePrompt,
    embeddings: [...p.embeddings],
    numInferenceSteps: String(p.numInferenceSteps),
    guidanceScale: String(p.guidanceScale),
    width: String(p.width),
    height: String(p.height),
    samples: String(p.samples),
    seed: String(p.seed),
    strength: p.strength == null ? current.strength : String(p.strength),
    maskBlur: p.maskBlur == null ? current.maskBlur : String(p.maskBlur),
    keepUnmasked: p.keepUnmasked ?? current.keepUnmasked,
    scheduler: p.scheduler ?? '',
    safetyChecker: p.safetyChecker,
    initImage: initImage
      ? {
          file: null,
          src: initImage,
          width: 0,
          height: 0,
          name: initImage.startsWith('data:') ? `image of job ${job.id.slice(0, 8)}` : initImage,
        }
      : null,
    maskToLoad: maskImage,
  };
}

/** The catalogue's checkpoint that an id or alias names (jobs may store "sd1.5"). */
export function findCheckpoint(checkpoints: CatalogueModel[], id: string): CatalogueModel | undefined {
  return checkpoints.find((m) => m.id === id) ?? checkpoints.find((m) => m.aliases.includes(id));
}

/** The checkpoint a new form starts with: the one answering to "sd1.5", else the first ordinary one. */
export function defaultCheckpoint(checkpoints: CatalogueModel[]): CatalogueModel | undefined {
  return findCheckpoint(checkpoints, 'sd1.5') ?? checkpoints.find((m) => !m.inpainting) ?? checkpoints[0];
}
