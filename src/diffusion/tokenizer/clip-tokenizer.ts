/**
 * CLIP byte-level BPE tokenizer for Stable Diffusion 1.5 (openai/clip-vit-large-patch14), matching
 * Hugging Face transformers' (slow) `CLIPTokenizer` without ftfy, built from a checkpoint's
 * `tokenizer/vocab.json` + `tokenizer/merges.txt`, with textual-inversion trigger tokens.
 */
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { END_OF_WORD, parseMerges, parseSpecialTokens, type SpecialTokenSettings, TokenizerFileError, validateVocab } from './files.js';
import { BYTE_DECODER, bytesToUnicode, normalizeClipText, preTokenize } from './normalize.js';

export { TokenizerFileError } from './files.js';

/** The prompt has more content tokens than fit between BOS and EOS. */
export class TokenLimitError extends Error {
  constructor(
    /** Content tokens in the prompt (BOS/EOS not counted, trigger expansion counted). */
    readonly count: number,
    /** Content tokens allowed (maxLength - 2; 75 for SD 1.5). */
    readonly limit: number,
  ) {
    super(`the prompt is ${count} tokens; the limit is ${limit}`);
    this.name = 'TokenLimitError';
  }
}

export interface ClipTokenizerData {
  /** Parsed vocab.json: token string → id. */
  vocab: unknown;
  /** merges.txt text, or its lines (a first `#version` line is skipped). */
  merges: string | readonly string[];
  /** Parsed tokenizer_config.json, if any. */
  tokenizerConfig?: unknown;
  /** Parsed special_tokens_map.json, if any (wins over tokenizer_config.json, as in transformers). */
  specialTokensMap?: unknown;
  /** Unescape HTML entities before tokenizing, like openai CLIP (default true). */
  htmlUnescape?: boolean;
  /** Names used in error messages (defaults: the bare file names). */
  fileNames?: { vocab?: string; merges?: string; tokenizerConfig?: string; specialTokensMap?: string };
}

export interface EncodeOptions {
  /** Trigger words (as registered with addTriggerTokens) to expand for this request. */
  activeTriggers?: Iterable<string>;
}

export interface EncodeForModelOptions extends EncodeOptions {
  /** Total sequence length including BOS and EOS (default: model_max_length, 77 for SD 1.5). */
  maxLength?: number;
}

const DEFAULTS = { bos: '<|startoftext|>', eos: '<|endoftext|>', unk: '<|endoftext|>', pad: '<|endoftext|>' };
const DEFAULT_MAX_LENGTH = 77;
const CACHE_LIMIT = 20_000;
const WORD_CHAR = /[\p{L}\p{N}_]/u;

function escapeRegExp(s: string): string {
  // Only syntax characters: with the `u` flag, escaping anything else (e.g. `-`) is an error.
  return s.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&');
}

async function readOptional(path: string): Promise<string | undefined> {
  try {
    return await readFile(path, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw new TokenizerFileError(path, `cannot be read: ${(err as Error).message}`);
  }
}

function parseJson(text: string, file: string): unknown {
  try {
    return JSON.parse(text.replace(/^\uFEFF/, '')) as unknown;
  } catch (err) {
    throw new TokenizerFileError(file, `is not valid JSON: ${(err as Error).message}`);
  }
}

export class ClipTokenizer {
  readonly bosToken: string;
  readonly eosToken: string;
  readonly unkToken: string;
  readonly padToken: string;
  readonly bosTokenId: number;
  readonly eosTokenId: number;
  readonly unkTokenId: number;
  readonly padTokenId: number;
  /** Default total sequence length (tokenizer_config's model_max_length, else 77). */
  readonly modelMaxLength: number;
  /** Ids below this come from vocab.json; trigger ids are reserved from here on. */
  readonly baseVocabSize: number;

  private readonly encoder: Map<string, number>;
  private readonly decoder = new Map<number, string>();
  private readonly bpeRanks: Map<string, number>;
  private readonly cache = new Map<string, string[]>();
  private readonly htmlUnescape: boolean;
  /** Special-token strings split out of the text before BPE (transformers' added-tokens trie). */
  private readonly specialStrings: string[];
  /** Registered triggers (lowercased) → their reserved ids. */
  private triggers = new Map<string, number[]>();
  /** Every added token name (trigger and trigger_i) → id, and back. */
  private addedTokens = new Map<string, number>();
  private addedNames = new Map<number, string>();
  /** The id addTriggerTokens hands out next. */
  private nextId: number;

  constructor(data: ClipTokenizerData) {
    const names = {
      vocab: data.fileNames?.vocab ?? 'vocab.json',
      merges: data.fileNames?.merges ?? 'merges.txt',
      tokenizerConfig: data.fileNames?.tokenizerConfig ?? 'tokenizer_config.json',
      specialTokensMap: data.fileNames?.specialTokensMap ?? 'special_tokens_map.json',
    };
    this.encoder = validateVocab(data.vocab, names.vocab);
    this.bpeRanks = parseMerges(data.merges, this.encoder, names.merges);
    let maxId = -1;
    for (const [token, id] of this.encoder) {
      this.decoder.set(id, token);
      if (id > maxId) maxId = id;
    }
    this.baseVocabSize = maxId + 1;
    this.nextId = this.baseVocabSize;

    const fromConfig: SpecialTokenSettings =
      data.tokenizerConfig === undefined ? {} : parseSpecialTokens(data.tokenizerConfig, names.tokenizerConfig);
    const fromMap: SpecialTokenSettings =
      data.specialTokensMap === undefined ? {} : parseSpecialTokens(data.specialTokensMap, names.specialTokensMap);
    const pick = (key: 'bos' | 'eos' | 'unk' | 'pad') => {
      const token = fromMap[key] ?? fromConfig[key] ?? DEFAULTS[key];
      const id = this.encoder.get(token);
      if (id === undefined) {
        const file =
          fromMap[key] !== undefined ? names.specialTokensMap : fromConfig[key] !== undefined ? names.tokenizerConfig : names.vocab;
        throw new TokenizerFileError(file, `${key}_token ${JSON.stringify(token)} is not in the vocab`);
      }
      return [token, id] as const;
    };
    [this.bosToken, this.bosTokenId] = pick('bos');
    [this.eosToken, this.eosTokenId] = pick('eos');
    [this.unkToken, this.unkTokenId] = pick('unk');
    [this.padToken, this.padTokenId] = pick('pad');
    this.modelMaxLength = fromConfig.modelMaxLength ?? DEFAULT_MAX_LENGTH;
    this.htmlUnescape = data.htmlUnescape ?? true;
    this.specialStrings = [...new Set([this.bosToken, this.eosToken, this.unkToken, this.padToken])].sort((a, b) => b.length - a.length);
  }

  /**
   * Loads a tokenizer folder (a diffusers checkpoint's `tokenizer/`): vocab.json and merges.txt are
   * required, tokenizer_config.json and special_tokens_map.json are read when present.
   */
  static async fromFiles(dir: string, options: { htmlUnescape?: boolean } = {}): Promise<ClipTokenizer> {
    const paths = {
      vocab: join(dir, 'vocab.json'),
      merges: join(dir, 'merges.txt'),
      tokenizerConfig: join(dir, 'tokenizer_config.json'),
      specialTokensMap: join(dir, 'special_tokens_map.json'),
    };
    const [vocabText, mergesText, configText, mapText] = await Promise.all([
      readOptional(paths.vocab),
      readOptional(paths.merges),
      readOptional(paths.tokenizerConfig),
      readOptional(paths.specialTokensMap),
    ]);
    if (vocabText === undefined) throw new TokenizerFileError(paths.vocab, 'is missing');
    if (mergesText === undefined) throw new TokenizerFileError(paths.merges, 'is missing');
    const data: ClipTokenizerData = {
      vocab: parseJson(vocabText, paths.vocab),
      merges: mergesText,
      fileNames: paths,
    };
    if (configText !== undefined) data.tokenizerConfig = parseJson(configText, paths.tokenizerConfig);
    if (mapText !== undefined) data.specialTokensMap = parseJson(mapText, paths.specialTokensMap);
    if (options.htmlUnescape !== undefined) data.htmlUnescape = options.htmlUnescape;
    return new ClipTokenizer(data);
  }

  /** Vocab size including reserved trigger ids (rows the text encoder's embedding table needs). */
  get vocabSize(): number {
    return this.nextId;
  }

  /** The registered triggers and their ids. */
  get triggerTokens(): ReadonlyMap<string, readonly number[]> {
    return this.triggers;
  }

  /**
   * Reserves `count` new ids after the vocab for a textual-inversion trigger, named like diffusers'
   * load_textual_inversion: `trigger`, `trigger_1`, …, `trigger_{count-1}`. Returns the ids.
   * The trigger is matched case-insensitively (it is stored lowercased).
   */
  addTriggerTokens(trigger: string, count: number): number[] {
    if (!Number.isInteger(count) || count < 1)
      throw new Error(`trigger ${JSON.stringify(trigger)}: vector count must be a positive integer, got ${count}`);
    const ids = Array.from({ length: count }, (_, i) => this.nextId + i);
    this.register(trigger, ids);
    return ids;
  }

  /**
   * A tokenizer that knows exactly these triggers, with the ids given (rows of a text encoder's
   * table), and shares everything else with this one. Per-request: registering a request's
   * triggers this way never changes what another request's tokenizer does.
   */
  withTriggers(triggers: readonly { trigger: string; ids: readonly number[] }[]): ClipTokenizer {
    const fork = Object.create(ClipTokenizer.prototype) as ClipTokenizer;
    Object.assign(fork, this, {
      triggers: new Map(),
      addedTokens: new Map(),
      addedNames: new Map(),
      nextId: this.baseVocabSize,
    });
    for (const { trigger, ids } of triggers) fork.register(trigger, ids);
    return fork;
  }

  private register(trigger: string, ids: readonly number[]): void {
    const key = trigger.normalize('NFC').toLowerCase();
    if (key === '' || /\s/u.test(key)) throw new Error(`trigger ${JSON.stringify(trigger)} must be a non-empty word without whitespace`);
    if (ids.length < 1) throw new Error(`trigger ${JSON.stringify(trigger)} needs at least one id`);
    const names = [key];
    for (let i = 1; i < ids.length; i++) names.push(`${key}_${i}`);
    names.forEach((name, i) => {
      if (this.specialStrings.includes(name)) throw new Error(`trigger ${JSON.stringify(trigger)} would shadow the special token ${name}`);
      if (this.addedTokens.has(name) || this.triggers.has(name)) {
        throw new Error(`trigger token ${JSON.stringify(name)} is already registered`);
      }
      const id = ids[i]!;
      if (!Number.isInteger(id) || id < this.baseVocabSize || this.addedNames.has(id)) {
        throw new Error(`trigger token ${JSON.stringify(name)}: id ${id} is not free (ids from ${this.baseVocabSize} on)`);
      }
    });
    names.forEach((name, i) => {
      this.addedTokens.set(name, ids[i]!);
      this.addedNames.set(ids[i]!, name);
    });
    this.triggers.set(key, [...ids]);
    this.nextId = Math.max(this.nextId, ...ids.map((id) => id + 1));
  }

  /** The ids reserved for a trigger, or undefined when it is not registered. */
  triggerIds(trigger: string): readonly number[] | undefined {
    return this.triggers.get(trigger.normalize('NFC').toLowerCase());
  }

  /** BPE token strings for the text (special tokens and active triggers as their names). */
  tokenize(text: string, options: EncodeOptions = {}): string[] {
    const out: string[] = [];
    this.walk(text, options, (piece, ids) => {
      if (ids) {
        for (const id of ids) out.push(this.tokenName(id) ?? '');
      } else {
        out.push(...this.bpe(piece));
      }
    });
    return out;
  }

  /** Content token ids (no BOS/EOS). Active triggers expand to all their ids in place. */
  encode(text: string, options: EncodeOptions = {}): number[] {
    const out: number[] = [];
    this.walk(text, options, (piece, ids) => {
      if (ids) {
        out.push(...ids);
      } else {
        for (const token of this.bpe(piece)) out.push(this.encoder.get(token) ?? this.unkTokenId);
      }
    });
    return out;
  }

  /** Number of content tokens `encode` would produce. */
  countTokens(text: string, options: EncodeOptions = {}): number {
    return this.encode(text, options).length;
  }

  /**
   * `[BOS, …content, EOS, PAD…]` of exactly `maxLength` ids (77 for SD 1.5). Throws
   * TokenLimitError when the content exceeds `maxLength - 2` tokens; never truncates.
   */
  encodeForModel(text: string, options: EncodeForModelOptions = {}): Int32Array {
    const maxLength = options.maxLength ?? this.modelMaxLength;
    if (!Number.isInteger(maxLength) || maxLength < 2) throw new Error(`maxLength must be an integer ≥ 2, got ${maxLength}`);
    const content = this.encode(text, options);
    const limit = maxLength - 2;
    if (content.length > limit) throw new TokenLimitError(content.length, limit);
    const ids = new Int32Array(maxLength).fill(this.padTokenId);
    ids[0] = this.bosTokenId;
    ids.set(content, 1);
    ids[content.length + 1] = this.eosTokenId;
    return ids;
  }

  /** Text for ids (like transformers' decode without cleanup; special tokens kept, triggers by name). */
  decode(ids: Iterable<number>): string {
    let text = '';
    const bytes: number[] = [];
    const flush = () => {
      if (bytes.length > 0) text += Buffer.from(bytes).toString('utf8');
      bytes.length = 0;
    };
    for (const id of ids) {
      const token = this.tokenName(id);
      if (token === undefined) continue;
      if (this.addedTokens.has(token) || this.specialStrings.includes(token)) {
        flush();
        text += `${token} `;
        continue;
      }
      for (const ch of token.replaceAll(END_OF_WORD, ' ')) {
        if (ch === ' ') {
          flush();
          text += ' ';
        } else {
          const b = BYTE_DECODER.get(ch);
          if (b !== undefined) bytes.push(b);
        }
      }
    }
    flush();
    return text.replace(/ +/g, ' ').trim();
  }

  private tokenName(id: number): string | undefined {
    return this.addedNames.get(id) ?? this.decoder.get(id);
  }

  /**
   * Normalises the text, splits out special tokens and active triggers (whole words) and hands
   * each piece to `emit`: ordinary pre-tokens (already byte-encoded) with `ids` undefined, atoms
   * with their ids.
   */
  private walk(text: string, options: EncodeOptions, emit: (piece: string, ids?: readonly number[]) => void): void {
    const normalized = normalizeClipText(text, { htmlUnescape: this.htmlUnescape });
    const atoms = new Map<string, readonly number[]>();
    for (const s of this.specialStrings) atoms.set(s, [this.encoder.get(s)!]);
    const alternatives = this.specialStrings.map(escapeRegExp);
    const active = [...new Set([...(options.activeTriggers ?? [])].map((t) => t.normalize('NFC').toLowerCase()))];
    active.sort((a, b) => b.length - a.length);
    for (const trigger of active) {
      const ids = this.triggers.get(trigger);
      if (!ids) throw new Error(`trigger ${JSON.stringify(trigger)} is not registered with the tokenizer`);
      atoms.set(trigger, ids);
      const chars = [...trigger];
      const before = WORD_CHAR.test(chars[0]!) ? '(?<![\\p{L}\\p{N}_])' : '';
      const after = WORD_CHAR.test(chars[chars.length - 1]!) ? '(?![\\p{L}\\p{N}_])' : '';
      alternatives.push(`${before}${escapeRegExp(trigger)}${after}`);
    }
    // Specials first (as transformers' trie, longest first), then triggers longest first.
    const splitter = new RegExp(alternatives.join('|'), 'gu');
    let last = 0;
    const plain = (segment: string) => {
      for (const word of preTokenize(segment)) emit(bytesToUnicode(word));
    };
    for (const match of normalized.matchAll(splitter)) {
      plain(normalized.slice(last, match.index));
      emit(match[0], atoms.get(match[0]));
      last = match.index + match[0].length;
    }
    plain(normalized.slice(last));
  }

  /** Byte-level BPE of one pre-token (already mapped to the byte alphabet), with `</w>` on the last symbol. */
  private bpe(token: string): string[] {
    const cached = this.cache.get(token);
    if (cached) return cached;
    const chars = [...token];
    let word = chars.slice(0, -1);
    word.push(chars[chars.length - 1]! + END_OF_WORD);
    if (word.length > 1) {
      for (;;) {
        let best = Infinity;
        let first = '';
        let second = '';
        for (let i = 0; i < word.length - 1; i++) {
          const rank = this.bpeRanks.get(`${word[i]} ${word[i + 1]}`);
          if (rank !== undefined && rank < best) {
            best = rank;
            first = word[i]!;
            second = word[i + 1]!;
          }
        }
        if (best === Infinity) break;
        const merged: string[] = [];
        for (let i = 0; i < word.length;) {
          if (word[i] === first && i < word.length - 1 && word[i + 1] === second) {
            merged.push(first + second);
            i += 2;
          } else {
            merged.push(word[i]!);
            i += 1;
          }
        }
        word = merged;
        if (word.length === 1) break;
      }
    }
    if (this.cache.size >= CACHE_LIMIT) this.cache.clear();
    this.cache.set(token, word);
    return word;
  }
}
