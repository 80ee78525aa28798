import {
  CancelJobStateDocument,
  JobDocument,
  JobHistoryDocument,
  SubmitImage2ImageDocument,
  SubmitInpaintingDocument,
  SubmitText2ImageDocument,
  type Image2ImageInput,
  type InpaintingInput,
  type JobHistoryQuery,
  type JobQuery,
  type JobStateFragment,
  type JobWithSettingsFragment,
  type Text2ImageInput,
} from '../../../src/client/generated/graphql';
import { request } from './graphql-http';

/** A job's state and the settings it was made with (not the images sent in). */
export type JobWithSettings = JobWithSettingsFragment;
/** A job's state alone: what changes while it runs. */
export type JobState = JobStateFragment;
/** A job with the images it was made from (init and mask), for reusing its settings. */
export type FullJob = NonNullable<JobQuery['job']>;
export type JobPage = JobHistoryQuery['jobs'];

/** One generation request, in the shape of its mutation. */
export type GenerationRequest =
  | { mode: 'text2image'; input: Text2ImageInput }
  | { mode: 'image2image'; input: Image2ImageInput }
  | { mode: 'inpainting'; input: InpaintingInput };

/** Creates the job; the server answers at once (PENDING, with its queue position). */
export async function submitJob(generation: GenerationRequest, apiKey: string): Promise<JobWithSettings> {
  switch (generation.mode) {
    case 'text2image':
      return (await request(SubmitText2ImageDocument, { input: generation.input }, apiKey)).text2image;
    case 'image2image':
      return (await request(SubmitImage2ImageDocument, { input: generation.input }, apiKey)).image2image;
    case 'inpainting':
      return (await request(SubmitInpaintingDocument, { input: generation.input }, apiKey)).inpainting;
  }
}

export async function cancelJob(id: string, apiKey: string): Promise<JobState> {
  return (await request(CancelJobStateDocument, { id }, apiKey)).cancelJob;
}

export async function fetchJob(id: string, apiKey: string): Promise<FullJob | null> {
  return (await request(JobDocument, { id }, apiKey)).job;
}

/** A page of the key's jobs, newest first. */
export async function fetchJobPage(first: number, after: string | null, apiKey: string): Promise<JobPage> {
  return (await request(JobHistoryDocument, { first, after }, apiKey)).jobs;
}

export const isFinished = (job: { status: JobState['status'] }) =>
  job.status === 'SUCCESS' || job.status === 'FAILURE' || job.status === 'CANCELED';
