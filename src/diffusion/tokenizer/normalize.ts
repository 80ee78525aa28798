/**
 * Text normalisation and pre-tokenisation for the CLIP BPE tokenizer, following Hugging Face
 * transformers' `CLIPTokenizer` on its no-ftfy path (`BasicTokenizer(strip_accents=False,
 * do_split_on_punc=False)`), plus the double HTML unescape of openai CLIP's `basic_clean`.
 */

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

const NAMED_ENTITIES: Record<string, string> = {
  amp: '&',
  lt: '<',
  gt: '>',
  quot: '"',
  apos: "'",
  nbsp: '\u00a0',
  ndash: '\u2013',
  mdash: '\u2014',
  lsquo: '\u2018',
  rsquo: '\u2019',
  ldquo: '\u201c',
  rdquo: '\u201d',
  hellip: '\u2026',
  copy: '\u00a9',
  reg: '\u00ae',
  trade: '\u2122',
  deg: '\u00b0',
  times: '\u00d7',
  eacute: '\u00e9',
};

/** Unescapes the common named entities and numeric character references (`&#39;`, `&#x27;`). */
export function htmlUnescape(text: string): string {
  if (!text.includes('&')) return text;
  return text.replace(/&(?:#(\d{1,7})|#[xX]([0-9a-fA-F]{1,6})|([a-zA-Z]+));/g, (whole, dec, hex, name) => {
    if (name !== undefined) return NAMED_ENTITIES[name as string] ?? whole;
    const cp = dec !== undefined ? Number.parseInt(dec as string, 10) : Number.parseInt(hex as string, 16);
    if (cp <= 0 || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) return whole;
    return String.fromCodePoint(cp);
  });
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
 * HTML unescape (×2), whitespace characters → space, control characters / NUL / U+FFFD dropped,
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
