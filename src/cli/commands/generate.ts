import {
  CreateImage2ImageDocument,
  CreateInpaintingDocument,
  CreateText2ImageDocument,
  type CreateText2ImageMutation,
  type Scheduler,
  type Text2ImageInput,
} from '../../client/generated/graphql.js';
import type { Command, GenerateRequest } from '../args.js';
import type { ApiClient } from '../client.js';
import type { CommandContext } from '../context.js';
import { imageArgument } from '../image-input.js';
import { Interrupt } from '../interrupt.js';
import { followToEnd, jobHeader } from './follow-to-end.js';

/** sd15 generate: creates the job, follows it, saves its images. */
export async function generate(ctx: CommandContext, command: Extract<Command, { name: 'generate' }>): Promise<number> {
  // Files are read before anything is sent: an unreadable --init creates no job.
  const init = command.request.init === undefined ? undefined : await imageArgument('init', command.request.init);
  const mask = command.request.mask === undefined ? undefined : await imageArgument('mask', command.request.mask);
  // Listening before the mutation: a Ctrl-C while it is in flight still cancels the job it makes.
  const interrupt = Interrupt.listen(ctx.stderr);
  try {
    const job = await createJob(ctx.client, command.request, init, mask);
    if (!command.json) ctx.stdout.write(jobHeader(job.id, command.request.mode, job.seed));
    return await followToEnd(ctx, job.id, command, interrupt);
  } finally {
    interrupt.dispose();
  }
}

/** The Create* mutations: the new job's id and seed, without the echo of its (possibly inline) images. */
type CreatedJob = CreateText2ImageMutation['text2image'];

async function createJob(client: ApiClient, request: GenerateRequest, initImage?: string, maskImage?: string): Promise<CreatedJob> {
  const common: Text2ImageInput = {
    prompt: request.prompt,
    negativePrompt: request.negativePrompt,
    modelId: request.modelId,
    embeddings: request.embeddings,
    numInferenceSteps: request.numInferenceSteps,
    guidanceScale: request.guidanceScale,
    width: request.width,
    height: request.height,
    seed: request.seed,
    samples: request.samples,
    // Not checked here: the server refuses a name it does not know (exit 2), and may know more than this version.
    scheduler: request.scheduler as Scheduler | undefined,
  };
  switch (request.mode) {
    case 'text2image':
      return (await client.request(CreateText2ImageDocument, { input: common })).text2image;
    case 'image2image':
      return (await client.request(CreateImage2ImageDocument, { input: { ...common, initImage, strength: request.strength } })).image2image;
    case 'inpainting':
      return (
        await client.request(CreateInpaintingDocument, {
          input: {
            ...common,
            initImage,
            maskImage,
            strength: request.strength,
            maskBlur: request.maskBlur,
            keepUnmasked: request.keepUnmasked,
          },
        })
      ).inpainting;
  }
}
