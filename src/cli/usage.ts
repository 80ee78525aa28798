import { SCHEDULER_NAMES } from '../generation/request.js';
import { DEFAULT_URL } from './args.js';

/** The text of `sd15 --help`. Ranges and defaults are the server's; they are here so nobody needs to look them up. */
export function usage(): string {
  return `sd15: Stable Diffusion 1.5 from the command line, through this project's GraphQL API

Usage:
  sd15 generate "PROMPT" [options]   create a job, follow it, save its images
  sd15 watch ID [--out DIR]          follow an existing job to its end and save its images
  sd15 jobs [--first N] [--after CURSOR]
                                     your jobs, newest first (id, mode, status, created, prompt)
  sd15 models                        the model catalogue (id, kind, name, trigger words, aliases)
  sd15 cancel ID                     cancel a job and print its final status
  sd15 help                          this text

Options of generate (absent ones take the server's defaults; the server checks the ranges):
  --negative TEXT          negative prompt (may hold negative-embedding trigger words)
  --mode MODE              text2image, image2image or inpainting; default: inpainting with
                           --mask, image2image with --init, text2image otherwise
  --init FILE|URL          init image: a local PNG, JPEG or WebP file (sent inline as a data: URL)
                           or an http(s) URL (the server fetches it)
  --mask FILE|URL          inpainting mask, the init image's size; white is repainted
  --model ID               checkpoint id or alias (default sd1.5; see sd15 models)
  --embedding ID           textual-inversion embedding; repeat for more, and write its trigger
                           word in the prompt or the negative prompt
  --steps N                denoising steps, 1 to 100 (default 30)
  --guidance X             guidance scale, 1 to 20 (default 7.5)
  --width N, --height N    pixels, multiples of 8 from 64 to 1024 (default 512)
  --seed N                 0 to 2147483647; absent or -1: random (printed with the job)
  --samples N              images, 1 to 4 (default 1)
  --strength X             image2image and inpainting: 0 keeps the init image, 1 ignores it (default 0.8)
  --mask-blur N            inpainting: the soft edge, in pixels, where kept and repainted pixels
                           blend, 0 to 64 (default 4; 0 = hard edge)
  --keep-unmasked yes|no   inpainting: paste the init image's unmasked pixels back (default yes;
                           no gives the model's output everywhere, as diffusers does)
  --scheduler NAME         ${SCHEDULER_NAMES.join(', ')}
  -o, --out DIR            where images are saved (also for watch): default the current folder,
                           created if missing; files are <jobId>-<n>.<ext>, n from 1

Options of every command:
  --url URL                the server (env SD15_URL; default ${DEFAULT_URL})
  --key KEY                the API key (env SD15_API_KEY; the server prints one on its first start)
  --json                   machine-readable output on stdout, no progress display
  -h, --help               this text

Output: results (saved paths, one per line; lists) go to stdout, errors to stderr. generate and
watch print "job ID …", then the progress on stdout: a bar with steps and ETA on a terminal,
otherwise one line per change ("queued 2" = 2 jobs ahead, "processing 3/20", then the final
status such as "SUCCESS").
Ctrl-C during generate or watch cancels the job, then exits 1; a second Ctrl-C exits at once.

Exit codes:
  0    success
  1    the job failed or was canceled (its error code and message are printed); also when the
       server cannot be reached or fails: the command may be right, so try it again later
  2    bad usage or input: an unknown option, a missing prompt, an unreadable file, a field the
       server refused (each printed with its reason), an unknown job, a missing or rejected key
  130  a second Ctrl-C: exited without waiting for the cancel

Examples:
  export SD15_API_KEY=sdk_...
  sd15 generate "a cottage in the woods, watercolor" --steps 25 --seed 42 --out images
  sd15 generate "a cat on the sofa" --init photo.png --strength 0.6
  sd15 generate "a red door" --init house.png --mask door-mask.png
  sd15 generate "a portrait" --negative UnrealisticDream --embedding f84133b4-aad8-44be-b9ce-7e7e3a8c111f
  sd15 jobs --first 5
  sd15 watch JOB_ID --out images
`;
}
