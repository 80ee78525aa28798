/**
 * Reading and validating a checkpoint's CLIP tokenizer files (`vocab.json`, `merges.txt`,
 * optional `tokenizer_config.json` and `special_tokens_map.json`).
 */
import { z } from 'zod';
import { BYTE_ENCODER } from './normalize.js';

/** A tokenizer file that is missing, unreadable or malformed. `file` names it. */
export class TokenizerFileError extends Error {
  constructor(
    readonly file: string,
    readonly problem: string,
  ) {
    super(`${file}: ${problem}`);
    this.name = 'TokenizerFileError';
  }
}

/** transformers keeps at most `49152 - 256 - 2` merges (the lines after the header). */
export const MAX_MERGES = 49152 - 256 - 2;

export const END_OF_WORD = '</w>';

const vocabSchema = z.record(z.string(), z.number().int().nonnegative());

export function validateVocab(raw: unknown, file: string): Map<string, number> {
  const parsed = vocabSchema.safeParse(raw);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    const where = issue && issue.path.length > 0 ? ` at ${JSON.stringify(issue.path.join('.'))}` : '';
    throw new TokenizerFileError(
      file,
      `must be a JSON object mapping token strings to non-negative integer ids${where}: ${issue?.message ?? 'invalid'}`,
    );
  }
  const vocab = new Map<string, number>();
  const byId = new Map<number, string>();
  for (const [token, id] of Object.entries(parsed.data)) {
    const other = byId.get(id);
    if (other !== undefined) {
      throw new TokenizerFileError(file, `id ${id} is used by both ${JSON.stringify(other)} and ${JSON.stringify(token)}`);
    }
    byId.set(id, token);
    vocab.set(token, id);
  }
  if (vocab.size === 0) throw new TokenizerFileError(file, 'is empty');
  const missing: string[] = [];
  for (const ch of BYTE_ENCODER) {
    if (!vocab.has(ch)) missing.push(ch);
    if (!vocab.has(ch + END_OF_WORD)) missing.push(ch + END_OF_WORD);
  }
  if (missing.length > 0) {
    throw new TokenizerFileError(
      file,
      `is missing ${missing.length} of the 512 byte-level base tokens (e.g. ${missing
        .slice(0, 3)
        .map((t) => JSON.stringify(t))
        .join(', ')})`,
    );
  }
  return vocab;
}

/**
 * Parses merges.txt text (or its lines) into merge ranks keyed by `"a b"`. A first line starting
 * with `#version` is a header and skipped; every other line must be two tokens whose
 * concatenation is in the vocab. Lines past MAX_MERGES are ignored, as transformers does.
 */
export function parseMerges(raw: string | readonly string[], vocab: ReadonlyMap<string, number>, file: string): Map<string, number> {
  let lines: string[];
  if (typeof raw === 'string') {
    const text = raw.replace(/^\uFEFF/, '').replace(/\s+$/, '');
    lines = text === '' ? [] : text.split('\n');
  } else {
    lines = [...raw];
  }
  let lineNo = 1;
  if (lines.length > 0 && lines[0]!.trimStart().startsWith('#version')) {
    lines = lines.slice(1);
    lineNo = 2;
  }
  if (lines.length === 0) throw new TokenizerFileError(file, 'has no merges');
  const ranks = new Map<string, number>();
  const count = Math.min(lines.length, MAX_MERGES);
  for (let i = 0; i < count; i++, lineNo++) {
    const line = lines[i]!;
    const parts = line
      .trim()
      .split(/\s+/)
      .filter((p) => p !== '');
    if (parts.length !== 2) {
      throw new TokenizerFileError(file, `line ${lineNo}: expected two space-separated tokens "a b", got ${JSON.stringify(line)}`);
    }
    const [a, b] = parts as [string, string];
    const key = `${a} ${b}`;
    if (ranks.has(key)) throw new TokenizerFileError(file, `line ${lineNo}: merge ${JSON.stringify(key)} appears twice`);
    if (!vocab.has(a + b)) {
      throw new TokenizerFileError(file, `line ${lineNo}: merged token ${JSON.stringify(a + b)} is not in the vocab`);
    }
    ranks.set(key, i);
  }
  return ranks;
}

/** A special token as written in tokenizer_config.json / special_tokens_map.json. */
const tokenValue = z.union([z.string(), z.object({ content: z.string() }).loose(), z.null()]);

const specialTokensSchema = z
  .object({
    bos_token: tokenValue.optional(),
    eos_token: tokenValue.optional(),
    unk_token: tokenValue.optional(),
    pad_token: tokenValue.optional(),
    model_max_length: z.number().optional(),
  })
  .loose();

export interface SpecialTokenSettings {
  bos?: string;
  eos?: string;
  unk?: string;
  pad?: string;
  modelMaxLength?: number;
}

export function parseSpecialTokens(raw: unknown, file: string): SpecialTokenSettings {
  const parsed = specialTokensSchema.safeParse(raw);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    throw new TokenizerFileError(
      file,
      `${issue && issue.path.length > 0 ? `${issue.path.join('.')}: ` : ''}${issue?.message ?? 'invalid'}`,
    );
  }
  const content = (v: z.infer<typeof tokenValue> | undefined) =>
    v === undefined || v === null ? undefined : typeof v === 'string' ? v : v.content;
  const out: SpecialTokenSettings = {};
  const bos = content(parsed.data.bos_token);
  const eos = content(parsed.data.eos_token);
  const unk = content(parsed.data.unk_token);
  const pad = content(parsed.data.pad_token);
  if (bos !== undefined) out.bos = bos;
  if (eos !== undefined) out.eos = eos;
  if (unk !== undefined) out.unk = unk;
  if (pad !== undefined) out.pad = pad;
  const max = parsed.data.model_max_length;
  // Some configs write a huge sentinel (1e30) meaning "no limit"; only keep a sane value.
  if (max !== undefined && Number.isInteger(max) && max >= 3 && max <= 4096) out.modelMaxLength = max;
  return out;
}
