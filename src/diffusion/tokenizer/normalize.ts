/**
 * Text normalisation and pre-tokenisation for the CLIP BPE tokenizer.
 *
 * What the engine follows: openai CLIP's `basic_clean` HTML step — Python's `html.unescape`
 * applied twice, every HTML5 entity — then Hugging Face transformers' `CLIPTokenizer` on its
 * no-ftfy path (`BasicTokenizer(strip_accents=False, do_split_on_punc=False)`: control characters
 * dropped, whitespace to spaces, spaces around CJK ideographs, NFC, whitespace collapsed), lowercased.
 *
 * transformers' CLIPTokenizer itself never calls html.unescape: without ftfy it runs BasicTokenizer
 * (entities stay as written); with ftfy it runs `whitespace_clean(ftfy.fix_text(text)).lower()`,
 * where ftfy's own `unescape_html` (mode "auto": skipped when the text contains `<`) is the only
 * unescaping. ftfy's fixes are not reproduced: mojibake repair (fix_encoding,
 * decode_inconsistent_utf8, replace_lossy_sequences, restore_byte_a0), fix_c1_controls,
 * remove_terminal_escapes, fix_latin_ligatures, fix_character_width, uncurl_quotes,
 * fix_line_breaks, fix_surrogates, and its own control-character list (BasicTokenizer's is used).
 * test/fixtures/tokenizer/README.md says how the parity fixtures were made.
 */
import { HTML5_ENTITIES_PACKED, INVALID_CHARREFS, INVALID_CODEPOINTS } from './html-entities.js';

/** The CLIP pre-tokenisation pattern (transformers' `self.pat`, compiled with IGNORECASE). */
export const CLIP_PATTERN = /<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+/giu;

/**
 * GPT-2 / CLIP `bytes_to_unicode`: every byte gets a printable code point; the printable Latin-1
 * bytes map to themselves, the other 68 to U+0100 onwards in byte order.
 */
function buildByteEncoder(): readonly string[] {
  const bs: number[] = [];
  for (let b = 0x21; b <= 0x7e; b++) bs.push(b);
  for (let b = 0xa1; b <= 0xac; b++) bs.push(b);
  for (let b = 0xae; b <= 0xff; b++) bs.push(b);
  const table = new Array<string>(256);
  for (const b of bs) table[b] = String.fromCodePoint(b);
  let n = 0;
  for (let b = 0; b < 256; b++) {
    if (table[b] === undefined) table[b] = String.fromCodePoint(256 + n++);
  }
  return table;
}

/** Index = byte value, value = the one-character string standing for it in vocab and merges. */
export const BYTE_ENCODER: readonly string[] = buildByteEncoder();
export const BYTE_DECODER: ReadonlyMap<string, number> = new Map(BYTE_ENCODER.map((ch, b) => [ch, b]));

const utf8 = new TextEncoder();

/** Maps a string's UTF-8 bytes to the byte-level unicode alphabet. */
export function bytesToUnicode(text: string): string {
  let out = '';
  for (const b of utf8.encode(text)) out += BYTE_ENCODER[b];
  return out;
}

let entities: Map<string, string> | undefined;
let longestEntityName = 0;

function entityTable(): Map<string, string> {
  if (!entities) {
    entities = new Map();
    for (const entry of HTML5_ENTITIES_PACKED.split('\u0002')) {
      const [name, value] = entry.split('\u0001') as [string, string];
      entities.set(name, value);
      if (name.length > longestEntityName) longestEntityName = name.length;
    }
  }
  return entities;
}

const INVALID_CODEPOINT_SET = new Set(INVALID_CODEPOINTS);

/** Python's `html._charref`: numeric references (`;` optional) and up to 32 name characters. */
const CHARREF = /&(#[0-9]+;?|#[xX][0-9a-fA-F]+;?|[^\t\n\f <&#;]{1,32};?)/gu;

function replaceNumeric(ref: string): string {
  const hex = ref[1] === 'x' || ref[1] === 'X';
  const digits = ref.slice(hex ? 2 : 1).replace(/;$/, '');
  // BigInt: Python's int() has no upper bound, and any value past U+10FFFF is U+FFFD.
  const big = BigInt(hex ? `0x${digits}` : digits);
  if (big > 0x10ffffn) return '\ufffd';
  const cp = Number(big);
  const replacement = INVALID_CHARREFS[cp];
  if (replacement !== undefined) return replacement;
  if (cp >= 0xd800 && cp <= 0xdfff) return '\ufffd';
  if (INVALID_CODEPOINT_SET.has(cp)) return '';
  return String.fromCodePoint(cp);
}

function replaceNamed(ref: string): string {
  const table = entityTable();
  const whole = table.get(ref);
  if (whole !== undefined) return whole;
  // The longest name that is a prefix (the legacy names without `;`, e.g. `&ampx` → `&x`).
  for (let x = Math.min(ref.length - 1, longestEntityName); x > 1; x--) {
    const value = table.get(ref.slice(0, x));
    if (value !== undefined) return value + ref.slice(x);
  }
  return `&${ref}`;
}

/**
 * Python's `html.unescape`: every HTML5 named character reference (with `;`, and the legacy ones
 * without), decimal and hex numeric references with Python's replacements (C1 controls as
 * Windows-1252, `&#0;`, surrogates and values past U+10FFFF as U+FFFD, noncharacters and most
 * controls dropped).
 */
export function htmlUnescape(text: string): string {
  if (!text.includes('&')) return text;
  return text.replace(CHARREF, (_whole, ref: string) => (ref[0] === '#' ? replaceNumeric(ref) : replaceNamed(ref)));
}

/** transformers' `BasicTokenizer._is_chinese_char` ranges (the CJK ideograph blocks). */
const CJK =
  /[\u{4E00}-\u{9FFF}\u{3400}-\u{4DBF}\u{20000}-\u{2A6DF}\u{2A700}-\u{2B73F}\u{2B740}-\u{2B81F}\u{2B820}-\u{2CEAF}\u{F900}-\u{FAFF}\u{2F800}-\u{2FA1F}]/gu;

export interface NormalizeOptions {
  /** Unescape HTML entities twice first, like openai CLIP's `basic_clean` (default true). */
  htmlUnescape?: boolean;
}

/**
 * Normalises a prompt the way CLIPTokenizer does before applying the regex:
 * Python's html.unescape (×2), whitespace characters → space, control characters / NUL / U+FFFD dropped,
 * spaces around CJK ideographs, NFC, whitespace runs collapsed, stripped, lowercased.
 */
export function normalizeClipText(text: string, options: NormalizeOptions = {}): string {
  let t = options.htmlUnescape === false ? text : htmlUnescape(htmlUnescape(text));
  t = t
    .replace(/[\t\n\r\p{Zs}]/gu, ' ')
    // NUL and U+FFFD are removed on purpose, as transformers' CLIP text cleaning does.
    // eslint-disable-next-line no-control-regex
    .replace(/[\u0000\uFFFD]|\p{C}/gu, '')
    .replace(CJK, (ch) => ` ${ch} `)
    .normalize('NFC');
  return t.replace(/\s+/gu, ' ').trim().toLowerCase();
}

/** Splits normalised text into CLIP pre-tokens (words, single digits, punctuation runs, contractions). */
export function preTokenize(text: string): string[] {
  return text.match(CLIP_PATTERN) ?? [];
}
