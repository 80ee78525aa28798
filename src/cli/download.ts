import { mkdir, rename, writeFile } from 'node:fs/promises';
import path from 'node:path';
import type { JobStateFragment } from '../client/generated/graphql.js';
import type { ApiClient } from './client.js';
import { CliError, ExitCode } from './errors.js';

const EXTENSIONS: Record<string, string> = { 'image/png': 'png', 'image/jpeg': 'jpg', 'image/webp': 'webp', 'image/gif': 'gif' };

/** "image/png; charset=…" → "png"; an unknown image type keeps its subtype, anything else is "bin". */
export function extensionFor(contentType: string | null | undefined): string {
  const type = (contentType ?? '').split(';')[0]!.trim().toLowerCase();
  const known = EXTENSIONS[type];
  if (known) return known;
  const subtype = type.startsWith('image/') ? type.slice('image/'.length).replace(/[^a-z0-9]/g, '') : '';
  return subtype || 'bin';
}

/**
 * Downloads every image of a finished job into outDir (created if missing) as <jobId>-<n>.<ext>,
 * n from 1, and returns the absolute paths. Each file is written under a temporary name and then
 * renamed, so an interrupted download never leaves a truncated image under the final name.
 */
export async function saveImages(
  client: ApiClient,
  job: Pick<JobStateFragment, 'id' | 'downloadUrls' | 'images'>,
  outDir: string,
): Promise<string[]> {
  const dir = path.resolve(outDir);
  try {
    await mkdir(dir, { recursive: true });
  } catch (err) {
    throw new CliError(`cannot create the output folder ${dir}: ${(err as Error).message}`, ExitCode.USAGE);
  }
  const saved: string[] = [];
  for (const [i, url] of job.downloadUrls.entries()) {
    const { bytes, contentType } = await client.download(url);
    const file = path.join(dir, `${job.id}-${i + 1}.${extensionFor(contentType ?? job.images[i]?.contentType)}`);
    const partial = `${file}.part`;
    try {
      await writeFile(partial, bytes);
      await rename(partial, file);
    } catch (err) {
      throw new CliError(`cannot write ${file}: ${(err as Error).message}`, ExitCode.FAILED);
    }
    saved.push(file);
  }
  return saved;
}
