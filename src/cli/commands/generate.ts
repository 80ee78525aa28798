import {
  Image2ImageDocument,
  InpaintingDocument,
  Text2ImageDocument,
  type Scheduler,
  type Text2ImageInput,
} from '../../client/generated/graphql.js';
import type { Command, GenerateRequest } from '../args.js';
import type { ApiClient } from '../client.js';
import type { CommandContext } from '../context.js';
import type { Job } from '../follow.js';
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
    if (!command.json) ctx.stdout.write(jobHeader(job));
    return await followToEnd(ctx, job, command, interrupt);
  } finally {
    interrupt.dispose();
  }
}

async function createJob(client: ApiClient, request: GenerateRequest, initImage?: string, maskImage?: string): Promise<Job> {
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
    // The server refuses names it does not know, listing the ones it does.
    scheduler: request.scheduler as Scheduler | undefined,
  };
  switch (request.mode) {
    case 'text2image':
      return (await client.request(Text2ImageDocument, { input: common })).text2image;
    case 'image2image':
      return (await client.request(Image2ImageDocument, { input: { ...common, initImage, strength: request.strength } })).image2image;
    case 'inpainting':
      return (await client.request(InpaintingDocument, { input: { ...common, initImage, maskImage, strength: request.strength } }))
        .inpainting;
  }
}
