/**
 * Tiny CLIP BPE tokenizer files in the Hugging Face layout (vocab.json, merges.txt):
 * 256 byte-level characters, their `</w>` forms, merges for common English pairs/words and for
 * every lowercase pair and triple,
 * then `<|startoftext|>` and `<|endoftext|>` (last two ids, as in CLIP).
 */

export const BOS_TOKEN = '<|startoftext|>';
export const EOS_TOKEN = '<|endoftext|>';

/** GPT-2 / CLIP bytes_to_unicode: byte value → printable unicode character, in CLIP vocab order. */
export function bytesToUnicode(): Array<[number, string]> {
  const bs: number[] = [];
  for (let b = 0x21; b <= 0x7e; b++) bs.push(b);
  for (let b = 0xa1; b <= 0xac; b++) bs.push(b);
  for (let b = 0xae; b <= 0xff; b++) bs.push(b);
  const cs = [...bs];
  let n = 0;
  for (let b = 0; b < 256; b++) {
    if (!bs.includes(b)) {
      bs.push(b);
      cs.push(256 + n);
      n++;
    }
  }
  return bs.map((b, i) => [b, String.fromCharCode(cs[i]!)]);
}

/** Merges, in priority order. Each must combine tokens that exist at that point. */
const MERGES: Array<[string, string]> = [
  ['i', 'n'],
  ['t', 'h'],
  ['a', 'n'],
  ['r', 'e'],
  ['a', 'r'],
  ['e', 'r'],
  ['th', 'e</w>'],
  ['in', 'g</w>'],
  ['o', 'u'],
  ['o', 'n'],
  ['s', 't'],
  ['o', 'r'],
  ['e', 'n'],
  ['o', 'n</w>'],
  ['a', 'l'],
  ['a', 't'],
  ['e', 'r</w>'],
  ['i', 't'],
  ['i', 'n</w>'],
  ['t', 'o'],
  ['r', 'o'],
  ['i', 's'],
  ['l', 'e'],
  ['i', 'c'],
  ['a', 't</w>'],
  ['an', 'd</w>'],
  ['e', 'd</w>'],
  ['o', 'f</w>'],
  ['c', 'h'],
  ['o', 'r</w>'],
  ['e', 's'],
  ['i', 'l'],
  ['e', 'l'],
  ['s', 't</w>'],
  ['a', 'c'],
  ['o', 'm'],
  ['a', 'm'],
  ['l', 'o'],
  ['a', 'n</w>'],
  ['a', 'y'],
  ['s', 'h'],
  ['r', 'i'],
  ['l', 'i'],
  ['t', 'i'],
  ['f', 'or</w>'],
  ['n', 'e'],
  ['r', 'a'],
  ['h', 'a'],
  ['d', 'e'],
  ['o', 'l'],
  ['v', 'e</w>'],
  ['s', '</w>'],
  ['e', '</w>'],
  ['y', '</w>'],
  ['c', 'at</w>'],
  ['d', 'o'],
  ['do', 'g</w>'],
  ['p', 'h'],
  ['ph', 'o'],
  ['pho', 't'],
  ['phot', 'o</w>'],
  ['u', 'n'],
  ['s', 'un'],
  ['re', 'd</w>'],
];

export interface TinyTokenizerFiles {
  vocab: Record<string, number>;
  merges: string[];
  bosId: number;
  eosId: number;
}

/**
 * Every lowercase pair and triple, inside and at the end of a word. Without them a word would be
 * one token per letter and ordinary prompts (the contract's example negative prompt, say) would
 * pass the 75-token limit; with them words take about a third of their letters, a little more
 * than real CLIP's 1.3 tokens per word. The table grows to about 36k tokens (4.6 MB at D = 32).
 */
function* generatedMerges(): Generator<[string, string]> {
  const letters = 'abcdefghijklmnopqrstuvwxyz'.split('');
  for (const a of letters) for (const b of letters) yield [a, b];
  for (const a of letters) for (const b of letters) yield [a, `${b}</w>`];
  for (const a of letters) for (const b of letters) for (const c of letters) yield [a + b, c];
  for (const a of letters) for (const b of letters) for (const c of letters) yield [a + b, `${c}</w>`];
}

export function buildTinyTokenizer(): TinyTokenizerFiles {
  const chars = bytesToUnicode().map(([, c]) => c);
  const tokens: string[] = [...chars, ...chars.map((c) => `${c}</w>`)];
  const known = new Set(tokens);
  const merges: string[] = [];
  for (const [a, b] of [...MERGES, ...generatedMerges()]) {
    // Skip merges whose parts do not exist (yet) — keeps the list valid by construction.
    if (!known.has(a) || !known.has(b) || known.has(a + b)) continue;
    merges.push(`${a} ${b}`);
    tokens.push(a + b);
    known.add(a + b);
  }
  tokens.push(BOS_TOKEN, EOS_TOKEN);
  const vocab: Record<string, number> = {};
  tokens.forEach((t, i) => (vocab[t] = i));
  return { vocab, merges, bosId: tokens.length - 2, eosId: tokens.length - 1 };
}

const tokenObject = (content: string) => ({ content, lstrip: false, normalized: true, rstrip: false, single_word: false });

export function tokenizerConfigJson(): object {
  return {
    add_prefix_space: false,
    bos_token: { __type: 'AddedToken', ...tokenObject(BOS_TOKEN) },
    do_lower_case: true,
    eos_token: { __type: 'AddedToken', ...tokenObject(EOS_TOKEN) },
    errors: 'replace',
    model_max_length: 77,
    name_or_path: 'tiny-sd15',
    pad_token: EOS_TOKEN,
    special_tokens_map_file: './special_tokens_map.json',
    tokenizer_class: 'CLIPTokenizer',
    unk_token: { __type: 'AddedToken', ...tokenObject(EOS_TOKEN) },
  };
}

export function specialTokensMapJson(): object {
  return {
    bos_token: tokenObject(BOS_TOKEN),
    eos_token: tokenObject(EOS_TOKEN),
    pad_token: EOS_TOKEN,
    unk_token: tokenObject(EOS_TOKEN),
  };
}
