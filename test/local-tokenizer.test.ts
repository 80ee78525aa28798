import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ClipTokenizer, type ClipTokenizerData, TokenizerFileError, TokenLimitError } from '../src/diffusion/tokenizer/clip-tokenizer.js';
import { BYTE_ENCODER, normalizeClipText } from '../src/diffusion/tokenizer/normalize.js';

/**
 * A small vocab laid out like the real CLIP one: the 256 byte characters in bytes_to_unicode
 * order, the same with `</w>`, one token per merge, then the two special tokens.
 */
const MERGES = ['c a', 'ca t</w>', 'o f</w>', 'p h', 'o t', 'ph ot', 'phot o</w>', 'h e', 'l l', 'he ll', 'y z</w>', 'x y'];

function byteOrder(): string[] {
  // bytes_to_unicode().values() order: printable ranges first, then the remapped bytes.
  const printable = (b: number) => (b >= 0x21 && b <= 0x7e) || (b >= 0xa1 && b <= 0xac) || (b >= 0xae && b <= 0xff);
  const bytes = [...Array(256).keys()];
  return [...bytes.filter(printable), ...bytes.filter((b) => !printable(b))].map((b) => BYTE_ENCODER[b]!);
}

function syntheticVocab(): Record<string, number> {
  const tokens = [...byteOrder(), ...byteOrder().map((c) => `${c}</w>`), ...MERGES.map((m) => m.replace(' ', ''))];
  tokens.push('<|startoftext|>', '<|endoftext|>');
  return Object.fromEntries(tokens.map((t, i) => [t, i]));
}

const vocab = syntheticVocab();
const mergesText = `#version: 0.2\n${MERGES.join('\n')}\n`;
const data = (extra: Partial<ClipTokenizerData> = {}): ClipTokenizerData => ({ vocab, merges: mergesText, ...extra });
const id = (token: string) => {
  const v = vocab[token];
  if (v === undefined) throw new Error(`no ${token}`);
  return v;
};
const BOS = id('<|startoftext|>');
const EOS = id('<|endoftext|>');
const BASE = Object.keys(vocab).length;

describe('CLIP tokenizer: byte-level BPE', () => {
  const tok = new ClipTokenizer(data());

  it('lays out the synthetic vocab like the real one', () => {
    expect(new Set(BYTE_ENCODER).size).toBe(256);
    expect(BYTE_ENCODER[0x20]).toBe('\u0120'); // space → Ġ
    expect(id('a</w>')).toBe(320); // as in openai/clip-vit-large-patch14
    expect(id('!')).toBe(0);
    expect(tok.baseVocabSize).toBe(BASE);
    expect([tok.bosTokenId, tok.eosTokenId, tok.padTokenId, tok.unkTokenId]).toEqual([BOS, EOS, EOS, EOS]);
    expect(tok.modelMaxLength).toBe(77);
  });

  it('merges by rank and marks the end of each word with </w>', () => {
    expect(tok.tokenize('a photo of a cat')).toEqual(['a</w>', 'photo</w>', 'of</w>', 'a</w>', 'cat</w>']);
    expect(tok.encode('a photo of a cat')).toEqual([320, id('photo</w>'), id('of</w>'), 320, id('cat</w>')]);
    // "ca t</w>" only merges at the end of a word
    expect(tok.tokenize('cats')).toEqual(['ca', 't', 's</w>']);
    expect(tok.tokenize('hello')).toEqual(['hell', 'o</w>']);
    // the lower-ranked pair wins even though it is further right
    expect(tok.tokenize('xyz')).toEqual(['x', 'yz</w>']);
    expect(tok.tokenize('x')).toEqual(['x</w>']);
  });

  it('lowercases, collapses whitespace and strips', () => {
    expect(tok.encode('  A   PHOTO\n\tof  a CAT ')).toEqual(tok.encode('a photo of a cat'));
    expect(normalizeClipText('  Hello\u00a0 \u200bWorld \n')).toBe('hello world');
    expect(tok.encode('')).toEqual([]);
    expect(tok.encode('   \n')).toEqual([]);
    // control characters are dropped; CJK ideographs become separate words (BasicTokenizer)
    expect(normalizeClipText('ca\u0000t\u0007')).toBe('cat');
    expect(normalizeClipText('x日本y')).toBe('x 日 本 y');
    // NFC: e + combining acute == é
    expect(tok.encode('cafe\u0301')).toEqual(tok.encode('café'));
  });

  it('splits punctuation, contractions and digits like the CLIP regex', () => {
    expect(tok.tokenize('cat, photo!!')).toEqual(['cat</w>', ',</w>', 'photo</w>', '!', '!</w>']);
    expect(tok.tokenize("cat's")).toEqual(['cat</w>', "'", 's</w>']);
    expect(tok.tokenize('123')).toEqual(['1</w>', '2</w>', '3</w>']);
    expect(tok.tokenize('cat-photo')).toEqual(['cat</w>', '-</w>', 'photo</w>']);
  });

  it('unescapes HTML entities and byte-encodes non-ASCII text', () => {
    expect(tok.tokenize('cat &amp; dog')).toEqual(tok.tokenize('cat & dog'));
    expect(tok.tokenize('&lt;b&gt;')).toEqual(['<</w>', 'b</w>', '></w>']);
    // é is two UTF-8 bytes: Ã (0xC3) and © (0xA9)
    expect(tok.tokenize('café')).toEqual(['ca', 'f', '\u00c3', '\u00a9</w>']);
    expect(tok.decode(tok.encode('Café, cat!'))).toBe('café , cat !');
  });

  it('maps special tokens written in the text to their ids', () => {
    expect(tok.encode('a <|endoftext|> cat')).toEqual([320, EOS, id('cat</w>')]);
    expect(tok.encode('!<|startoftext|>')).toEqual([id('!</w>'), BOS]);
  });
});

describe('CLIP tokenizer: model input', () => {
  const tok = new ClipTokenizer(data());

  it('wraps the content in BOS/EOS and pads to 77 with the pad token', () => {
    const ids = tok.encodeForModel('a photo of a cat');
    expect(ids).toBeInstanceOf(Int32Array);
    expect(ids.length).toBe(77);
    expect([...ids.slice(0, 7)]).toEqual([BOS, 320, id('photo</w>'), id('of</w>'), 320, id('cat</w>'), EOS]);
    expect([...ids.slice(7)].every((v) => v === EOS)).toBe(true);
    expect([...tok.encodeForModel('')].slice(0, 3)).toEqual([BOS, EOS, EOS]);
  });

  it('accepts exactly 75 content tokens and refuses 76 with the count', () => {
    const ok = tok.encodeForModel('a '.repeat(75));
    expect(ok[0]).toBe(BOS);
    expect(ok[76]).toBe(EOS);
    expect(tok.countTokens('a '.repeat(76))).toBe(76);
    let error: unknown;
    try {
      tok.encodeForModel('a '.repeat(76));
    } catch (err) {
      error = err;
    }
    expect(error).toBeInstanceOf(TokenLimitError);
    expect((error as TokenLimitError).count).toBe(76);
    expect((error as TokenLimitError).limit).toBe(75);
    expect((error as Error).message).toBe('the prompt is 76 tokens; the limit is 75');
  });

  it('takes the pad token and max length from special_tokens_map / tokenizer_config', () => {
    const sd2 = new ClipTokenizer(
      data({
        tokenizerConfig: { model_max_length: 10, pad_token: '<|endoftext|>' },
        specialTokensMap: {
          bos_token: { content: '<|startoftext|>', lstrip: false, normalized: true, rstrip: false, single_word: false },
          pad_token: '!',
        },
      }),
    );
    expect(sd2.padTokenId).toBe(0);
    expect([...sd2.encodeForModel('cat')]).toEqual([BOS, id('cat</w>'), EOS, 0, 0, 0, 0, 0, 0, 0]);
    expect(() => sd2.encodeForModel('a a a a a a a a a')).toThrow('the prompt is 9 tokens; the limit is 8');
  });
});

describe('CLIP tokenizer: textual-inversion triggers', () => {
  const tok = new ClipTokenizer(data());
  const single = tok.addTriggerTokens('<sks>', 1);
  const multi = tok.addTriggerTokens('Style', 3);

  it('reserves ids after the vocab, named like diffusers', () => {
    expect(single).toEqual([BASE]);
    expect(multi).toEqual([BASE + 1, BASE + 2, BASE + 3]);
    expect(tok.vocabSize).toBe(BASE + 4);
    expect(tok.triggerIds('STYLE')).toEqual(multi);
    expect(tok.tokenize('style', { activeTriggers: ['style'] })).toEqual(['style', 'style_1', 'style_2']);
  });

  it('expands active triggers in place, as whole words, case-insensitively', () => {
    const active = { activeTriggers: ['<sks>', 'STYLE'] };
    expect(tok.encode('a photo of <sks> cat', active)).toEqual([320, id('photo</w>'), id('of</w>'), ...single, id('cat</w>')]);
    expect(tok.encode('a Style cat, <SKS>', active)).toEqual([320, ...multi, id('cat</w>'), id(',</w>'), ...single]);
    expect(tok.encode('style,cat', active)).toEqual([...multi, id(',</w>'), id('cat</w>')]);
    // not whole words: tokenized as ordinary text
    expect(tok.encode('styles', active).every((v) => v < BASE)).toBe(true);
    expect(tok.encode('style_1 style2', active).every((v) => v < BASE)).toBe(true);
    expect(tok.encodeForModel('a style cat', active).slice(0, 7)).toEqual(Int32Array.from([BOS, 320, ...multi, id('cat</w>'), EOS]));
  });

  it('tokenizes inactive triggers as ordinary text and never yields added ids from text', () => {
    const plain = tok.encode('a photo of <sks> style cat');
    expect(plain.every((v) => v < BASE)).toBe(true);
    expect(plain).toEqual(new ClipTokenizer(data()).encode('a photo of <sks> style cat'));
    expect(tok.encode('<sks> style', { activeTriggers: ['<sks>'] })).toEqual([...single, ...tok.encode('style')]);
  });

  it('counts expanded vectors against the limit', () => {
    expect(tok.countTokens(`${'a '.repeat(72)}style`, { activeTriggers: ['style'] })).toBe(75);
    expect(() => tok.encodeForModel(`${'a '.repeat(73)}style`, { activeTriggers: ['style'] })).toThrow(
      'the prompt is 76 tokens; the limit is 75',
    );
  });

  it('refuses bad or duplicate triggers and unknown active ones', () => {
    expect(() => tok.addTriggerTokens('style', 1)).toThrow(/already registered/);
    expect(() => tok.addTriggerTokens('style_2', 1)).toThrow(/already registered/);
    expect(() => tok.addTriggerTokens('two words', 1)).toThrow(/without whitespace/);
    expect(() => tok.addTriggerTokens('<|endoftext|>', 1)).toThrow(/special token/);
    expect(() => tok.addTriggerTokens('x', 0)).toThrow(/positive integer/);
    expect(() => tok.encode('a cat', { activeTriggers: ['nope'] })).toThrow(/not registered/);
  });
});

describe('CLIP tokenizer: files', () => {
  let dir: string;
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'clip-tok-'));
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  const writeDir = async (name: string, files: Record<string, string>) => {
    const sub = join(dir, name);
    await rm(sub, { recursive: true, force: true });
    await mkdir(sub);
    for (const [file, text] of Object.entries(files)) await writeFile(join(sub, file), text);
    return sub;
  };

  it('loads a checkpoint tokenizer folder', async () => {
    const sub = await writeDir('ok', {
      'vocab.json': JSON.stringify(vocab),
      'merges.txt': mergesText.replaceAll('\n', '\r\n'),
      'special_tokens_map.json': JSON.stringify({
        bos_token: { content: '<|startoftext|>', lstrip: false, normalized: true, rstrip: false, single_word: false },
        eos_token: { content: '<|endoftext|>', lstrip: false, normalized: true, rstrip: false, single_word: false },
        pad_token: '<|endoftext|>',
        unk_token: { content: '<|endoftext|>', lstrip: false, normalized: true, rstrip: false, single_word: false },
      }),
      'tokenizer_config.json': JSON.stringify({
        add_prefix_space: false,
        bos_token: { __type: 'AddedToken', content: '<|startoftext|>' },
        do_lower_case: true,
        errors: 'replace',
        model_max_length: 77,
        pad_token: '<|endoftext|>',
        tokenizer_class: 'CLIPTokenizer',
      }),
    });
    const tok = await ClipTokenizer.fromFiles(sub);
    expect([...tok.encodeForModel('a photo of a cat').slice(0, 7)]).toEqual([
      BOS,
      320,
      id('photo</w>'),
      id('of</w>'),
      320,
      id('cat</w>'),
      EOS,
    ]);
    // merges without a header are accepted too
    const bare = await writeDir('bare', { 'vocab.json': JSON.stringify(vocab), 'merges.txt': MERGES.join('\n') });
    expect((await ClipTokenizer.fromFiles(bare)).tokenize('photo')).toEqual(['photo</w>']);
  });

  const refusal = async (files: Record<string, string>, file: string, problem: RegExp) => {
    const sub = await writeDir(`bad-${Math.random().toString(36).slice(2)}`, {
      'vocab.json': JSON.stringify(vocab),
      'merges.txt': mergesText,
      ...files,
    });
    for (const [name, text] of Object.entries(files)) if (text === '<missing>') await rm(join(sub, name));
    let error: unknown;
    try {
      await ClipTokenizer.fromFiles(sub);
    } catch (err) {
      error = err;
    }
    expect(error).toBeInstanceOf(TokenizerFileError);
    expect((error as TokenizerFileError).file).toBe(join(sub, file));
    expect((error as Error).message).toContain(join(sub, file));
    expect((error as Error).message).toMatch(problem);
  };

  it('refuses broken files, naming the file and the problem', async () => {
    await refusal({ 'merges.txt': '<missing>' }, 'merges.txt', /is missing/);
    await refusal({ 'vocab.json': '{"a": 1,' }, 'vocab.json', /not valid JSON/);
    await refusal({ 'vocab.json': '["a"]' }, 'vocab.json', /mapping token strings to non-negative integer ids/);
    await refusal({ 'vocab.json': JSON.stringify({ ...vocab, cat: 'x' }) }, 'vocab.json', /"cat"/);
    await refusal({ 'vocab.json': JSON.stringify({ ...vocab, cat: 1.5 }) }, 'vocab.json', /integer/);
    await refusal({ 'vocab.json': JSON.stringify({ ...vocab, dup: 0 }) }, 'vocab.json', /id 0 is used by both/);
    const { ['a</w>']: _dropped, ...noA } = vocab;
    await refusal({ 'vocab.json': JSON.stringify(noA) }, 'vocab.json', /missing 1 of the 512 byte-level base tokens/);
    await refusal({ 'merges.txt': '#version: 0.2\nc a\nca t </w>\n' }, 'merges.txt', /line 3: expected two/);
    await refusal({ 'merges.txt': '#version: 0.2\nc a\nd o\n' }, 'merges.txt', /line 3: merged token "do" is not in the vocab/);
    await refusal({ 'merges.txt': '#version: 0.2\n' }, 'merges.txt', /no merges/);
    await refusal({ 'special_tokens_map.json': '{"pad_token": 5}' }, 'special_tokens_map.json', /pad_token/);
    await refusal(
      { 'special_tokens_map.json': '{"pad_token": "<pad>"}' },
      'special_tokens_map.json',
      /pad_token "<pad>" is not in the vocab/,
    );
    await refusal({ 'tokenizer_config.json': '{"bos_token": "<s>"}' }, 'tokenizer_config.json', /bos_token "<s>"/);
  });

  it('refuses broken in-memory data too', () => {
    expect(() => new ClipTokenizer({ vocab: null, merges: mergesText })).toThrow(/^vocab\.json: /);
    expect(() => new ClipTokenizer({ vocab, merges: ['c a', 'oops'] })).toThrow(/^merges\.txt: line 2: /);
  });
});
