import { JOB_STATUSES, type Job, type JobError, type JobImage } from '../jobs/job.js';
import { DEFAULT_MASK_BLUR } from '../generation/input.js';
import { JOB_MODES, type GenerationParams } from '../generation/request.js';
import type { JobPage } from '../jobs/job-store.js';
import { builder } from './builder.js';
import { authorized } from './context.js';
import { NoiseSource } from './noise-source.js';
import { Scheduler } from './scheduler.js';
import { selects } from './selection.js';

export const JobStatus = builder.enumType('JobStatus', {
  description: 'Where a job is in its life. SUCCESS, FAILURE and CANCELED are final.',
  values: {
    PENDING: { value: JOB_STATUSES[0], description: 'Accepted and stored; waiting for the engine.' },
    PROCESSING: { value: JOB_STATUSES[1], description: 'The engine is generating; progress moves.' },
    SUCCESS: { value: JOB_STATUSES[2], description: 'Done: downloadUrls holds one URL per sample.' },
    FAILURE: { value: JOB_STATUSES[3], description: 'Ended without images: error says why.' },
    CANCELED: { value: JOB_STATUSES[4], description: 'Canceled by its owner before it finished.' },
  } as const,
});

export const JobMode = builder.enumType('JobMode', {
  description: 'The generation mode of a job.',
  values: {
    TEXT2IMAGE: { value: JOB_MODES[0], description: 'An image from a prompt.' },
    IMAGE2IMAGE: { value: JOB_MODES[1], description: 'An init image redrawn, guided by the prompt.' },
    INPAINTING: { value: JOB_MODES[2], description: 'Only the masked part of an init image redrawn.' },
  } as const,
});

interface ProgressShape {
  step: number;
  totalSteps: number;
  /** Only on live progress events of a watched job (never stored). */
  preview?: string | null;
}

const JobProgress = builder.objectRef<ProgressShape>('JobProgress').implement({
  description: 'How far the denoising has come.',
  fields: (t) => ({
    step: t.exposeInt('step', { description: 'Denoising steps done.' }),
    totalSteps: t.exposeInt('totalSteps', { description: 'Denoising steps in all.' }),
    fraction: t.float({
      description: 'step / totalSteps, from 0 to 1.',
      resolve: (p) => (p.totalSteps > 0 ? Math.min(1, p.step / p.totalSteps) : 0),
    }),
    preview: t.string({
      nullable: true,
      description:
        'A small image of the job as it forms (a data: URL of a JPEG, at most 256 px on the long side), while the engine denoises. Sent only to jobStatus subscribers that select this field, at most about 4 a second; null otherwise, and on engines that cannot make one.',
      resolve: (p) => p.preview ?? null,
    }),
  }),
});

const JobErrorType = builder.objectRef<JobError>('JobError').implement({
  description: 'Why a job ended in FAILURE.',
  fields: (t) => ({
    code: t.exposeString('code', {
      description:
        "Stable machine-readable code. The request's fault (retrying it unchanged fails again): INVALID_INPUT (it cannot be generated as given, e.g. an embedding that does not fit the checkpoint or an image that cannot be decoded), IMAGE_UNAVAILABLE (an init or mask image that could not be fetched). The engine's or the server's: ENGINE_REJECTED, ENGINE_FAILED, ENGINE_UNREACHABLE, ENGINE_LOST_JOB, ENGINE_BAD_REPLY, IMAGE_STORE_FAILED or INTERNAL.",
    }),
    message: t.exposeString('message', {
      description: 'What went wrong, for people: the reason, with file paths shortened and secrets removed.',
    }),
  }),
});

const JobImageType = builder.objectRef<JobImage>('JobImage').implement({
  description: 'One generated sample.',
  fields: (t) => ({
    url: t.string({
      description: 'Where to download it; the name is unguessable. A presigned URL expires, as downloadUrls do.',
      resolve: (i, _, ctx) => ctx.links.url(i.name, ctx.publicBaseUrl),
    }),
    contentType: t.exposeString('contentType', { description: 'The MIME type, for example image/png.' }),
    nsfw: t.exposeBoolean('nsfw', {
      nullable: true,
      description: 'True if the safety checker flagged it (and it was blacked out); null if it was not checked.',
    }),
  }),
});

const GenerationParameters = builder.objectRef<GenerationParams>('GenerationParameters').implement({
  description: 'The request a job was created from, after defaults were applied.',
  fields: (t) => ({
    modelId: t.exposeID('modelId', { description: 'The checkpoint id or alias.' }),
    prompt: t.exposeString('prompt', { description: 'The prompt.' }),
    negativePrompt: t.exposeString('negativePrompt', { description: 'The negative prompt ("" if none).' }),
    numInferenceSteps: t.exposeInt('numInferenceSteps', { description: 'Denoising steps.' }),
    guidanceScale: t.exposeFloat('guidanceScale', { description: 'Classifier-free guidance scale.' }),
    samples: t.exposeInt('samples', { description: 'Images requested.' }),
    width: t.exposeInt('width', { description: 'Width in pixels.' }),
    height: t.exposeInt('height', { description: 'Height in pixels.' }),
    seed: t.exposeInt('seed', { description: 'The seed used (a random one if none was given).' }),
    embeddings: t.exposeIDList('embeddings', { description: 'Embedding ids requested.' }),
    safetyChecker: t.exposeBoolean('safetyChecker', { description: 'Whether outputs are checked for NSFW content.' }),
    scheduler: t.field({
      type: Scheduler,
      nullable: true,
      description: "The scheduler requested; null: the engine's default.",
      resolve: (p) => p.scheduler ?? null,
    }),
    strength: t.exposeFloat('strength', { nullable: true, description: 'Denoise strength (image2image, inpainting).' }),
    initImage: t.exposeString('initImage', { nullable: true, description: 'The init image URL (image2image, inpainting).' }),
    maskImage: t.exposeString('maskImage', { nullable: true, description: 'The mask image URL (inpainting).' }),
    // Inpainting jobs recorded before these fields ran with their defaults.
    maskBlur: t.int({
      nullable: true,
      description: 'The blend edge in pixels (inpainting; null for the other modes).',
      resolve: (p) => p.maskBlur ?? (p.maskImage !== undefined ? DEFAULT_MASK_BLUR : null),
    }),
    keepUnmasked: t.boolean({
      nullable: true,
      description: "Whether the unmasked pixels are the init image's own (inpainting; null for the other modes).",
      resolve: (p) => p.keepUnmasked ?? (p.maskImage !== undefined ? true : null),
    }),
    noise: t.field({
      type: NoiseSource,
      nullable: true,
      description:
        "The noise source the seed drove, recorded when the job was created (the local engine's LOCAL_NOISE). Null when this server cannot know it: on the imagepipeline engine the upstream (the hosted service, or a worker behind this gateway) draws its own noise.",
      resolve: (p) => p.noise ?? null,
    }),
  }),
});

export const JobType = builder.objectRef<Job>('Job').implement({
  description: 'A generation job. Created by text2image, image2image or inpainting; follow it with Subscription.jobStatus.',
  fields: (t) => ({
    id: t.exposeID('id', { description: 'The job id.' }),
    mode: t.field({ type: JobMode, resolve: (j) => j.mode, description: 'The generation mode.' }),
    status: t.field({ type: JobStatus, resolve: (j) => j.status, description: 'Where the job is in its life.' }),
    progress: t.field({
      type: JobProgress,
      description: 'Denoising progress: 0 of N while pending, N of N on success.',
      resolve: (j) => j.progress ?? { step: 0, totalSteps: j.params.numInferenceSteps },
    }),
    queuePosition: t.int({
      nullable: true,
      description:
        'While PENDING: how many jobs start before this one on its engine (0 = next). Exact and live for the local engine; for a remote engine, what it reported at the last poll, and before it has the job, the jobs this server sends it first. Null once it has started, or when the engine does not say.',
      resolve: (j, _, ctx) => ctx.jobs.queuePosition(j),
    }),
    downloadUrls: t.stringList({
      description:
        'One URL per sample once SUCCESS; empty before. Served by this server, where they do not expire; or, when the server is set up for presigned URLs, straight from its bucket, valid for a while (ask the job again for fresh ones).',
      resolve: (j, _, ctx) => ctx.links.urls(j.images, ctx.publicBaseUrl),
    }),
    images: t.field({
      type: [JobImageType],
      description: 'The samples with their safety flags, once SUCCESS; empty before.',
      resolve: (j) => j.images,
    }),
    error: t.field({
      type: JobErrorType,
      nullable: true,
      description: 'Why the job failed; null unless status is FAILURE.',
      resolve: (j) => j.error,
    }),
    seed: t.int({ description: 'The seed actually used: the one requested, or the random one chosen.', resolve: (j) => j.params.seed }),
    parameters: t.field({ type: GenerationParameters, description: 'The request, with defaults applied.', resolve: (j) => j.params }),
    createdAt: t.field({ type: 'DateTime', description: 'When the job was accepted.', resolve: (j) => j.createdAt }),
    startedAt: t.field({
      type: 'DateTime',
      nullable: true,
      description: 'When the engine started generating.',
      resolve: (j) => j.startedAt,
    }),
    finishedAt: t.field({
      type: 'DateTime',
      nullable: true,
      description: 'When the job reached a final state.',
      resolve: (j) => j.finishedAt,
    }),
  }),
});

type Edge = JobPage['edges'][number];

const JobEdge = builder.objectRef<Edge>('JobEdge').implement({
  description: 'A job in a page of jobs, with its cursor.',
  fields: (t) => ({
    cursor: t.exposeString('cursor', { description: 'Pass as `after` to get the jobs after this one.' }),
    node: t.field({ type: JobType, description: 'The job.', resolve: (e) => e.job }),
  }),
});

const PageInfo = builder.objectRef<JobPage>('PageInfo').implement({
  description: 'Where a page stands in the whole list.',
  fields: (t) => ({
    hasNextPage: t.exposeBoolean('hasNextPage', { description: 'True if more jobs follow this page.' }),
    endCursor: t.string({
      nullable: true,
      description: 'The cursor of the last job of this page; null for an empty page.',
      resolve: (p) => p.edges.at(-1)?.cursor ?? null,
    }),
  }),
});

const JobConnection = builder.objectRef<JobPage>('JobConnection').implement({
  description: 'A page of jobs, newest first.',
  fields: (t) => ({
    edges: t.field({ type: [JobEdge], description: 'The jobs with their cursors.', resolve: (p) => p.edges }),
    nodes: t.field({ type: [JobType], description: 'The jobs alone.', resolve: (p) => p.edges.map((e) => e.job) }),
    pageInfo: t.field({ type: PageInfo, description: 'Pagination state.', resolve: (p) => p }),
  }),
});

const JobFilter = builder.inputType('JobFilter', {
  description: 'Narrows a job list; absent fields do not filter.',
  fields: (t) => ({
    status: t.field({ type: [JobStatus], description: 'Only jobs in one of these states.' }),
    mode: t.field({ type: [JobMode], description: 'Only jobs of one of these modes.' }),
  }),
});

builder.queryFields((t) => ({
  job: t.field({
    type: JobType,
    nullable: true,
    description: "One of the caller's jobs; null if there is no such job (or it is another key's).",
    args: { id: t.arg.id({ required: true, description: 'The job id.' }) },
    resolve: (_, { id }, ctx) => ctx.jobs.get(authorized(ctx, 'jobs.read'), String(id)),
  }),
  jobs: t.field({
    type: JobConnection,
    description: "The caller's jobs, newest first, in pages.",
    args: {
      first: t.arg.int({ defaultValue: 20, description: 'Page size, 1 to 100.' }),
      after: t.arg.string({ description: 'The endCursor of the previous page.' }),
      filter: t.arg({ type: JobFilter, description: 'Optional filter by status and mode.' }),
    },
    resolve: (_, args, ctx) =>
      ctx.jobs.list(authorized(ctx, 'jobs.read'), {
        first: args.first ?? 20,
        after: args.after,
        status: args.filter?.status,
        mode: args.filter?.mode,
      }),
  }),
}));

builder.mutationFields((t) => ({
  cancelJob: t.field({
    type: JobType,
    description:
      'Cancels one of your jobs that has not finished; returns it CANCELED. Canceling a canceled job returns it unchanged; a finished one is an error (JOB_ALREADY_FINISHED).',
    args: { id: t.arg.id({ required: true, description: 'The job id.' }) },
    resolve: (_, { id }, ctx) => ctx.jobs.cancel(authorized(ctx, 'jobs.cancel'), String(id)),
  }),
}));

builder.subscriptionFields((t) => ({
  jobStatus: t.field({
    type: JobType,
    description:
      'Follows one of your jobs: its current state first, then every status change and progress step, completing after SUCCESS, FAILURE or CANCELED.',
    args: { id: t.arg.id({ required: true, description: 'The job id.' }) },
    // Selecting progress.preview is what asks the engine for previews: nobody else pays for them.
    subscribe: (_, { id }, ctx, info) =>
      ctx.jobs.watch(authorized(ctx, 'jobs.read'), String(id), { preview: selects(info, ['progress', 'preview']) }),
    resolve: (job) => job,
  }),
}));
