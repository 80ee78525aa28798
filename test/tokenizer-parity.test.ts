/**
 * The engine's ClipTokenizer against Hugging Face transformers' CLIPTokenizer source on hard prompts
 * (test/fixtures/tokenizer/README.md says how cases.json was made and what `expected` means).
 */
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { buildTinyTokenizer } from '../scripts/tiny-models/tokenizer.js';
import { ClipTokenizer, TokenLimitError } from '../src/diffusion/tokenizer/clip-tokenizer.js';
import { htmlUnescape } from '../src/diffusion/tokenizer/normalize.js';

interface Case {
  prompt: string;
  expected: { tokens: string[]; ids: number[]; inputIds?: number[] };
}
const fixture = JSON.parse(readFileSync(new URL('./fixtures/tokenizer/cases.json', import.meta.url), 'utf8')) as {
  vocabSha256: string;
  mergesSha256: string;
  cases: Case[];
};
const tiny = buildTinyTokenizer();
const sha = (text: string) => createHash('sha256').update(text).digest('hex');

describe('CLIP tokenizer parity with transformers (tiny vocab)', () => {
  const tok = new ClipTokenizer({ vocab: tiny.vocab, merges: tiny.merges });

  it('uses the vocab the fixtures were made with', () => {
    expect(sha(JSON.stringify(tiny.vocab))).toBe(fixture.vocabSha256);
    expect(sha(`#version: 0.2\n${tiny.merges.join('\n')}\n`)).toBe(fixture.mergesSha256);
    expect(fixture.cases.length).toBeGreaterThanOrEqual(60);
  });

  it.each(fixture.cases.map((c, i) => [i, JSON.stringify(c.prompt).slice(0, 60), c] as const))('case %i: %s', (_i, _label, c) => {
    expect(tok.tokenize(c.prompt)).toEqual(c.expected.tokens);
    expect(tok.encode(c.prompt)).toEqual(c.expected.ids);
    if (c.expected.inputIds) {
      expect([...tok.encodeForModel(c.prompt)]).toEqual(c.expected.inputIds);
    } else {
      // Past 75 content tokens transformers would truncate; the engine refuses, with the count.
      expect(() => tok.encodeForModel(c.prompt)).toThrow(TokenLimitError);
      expect(tok.countTokens(c.prompt)).toBe(c.expected.ids.length);
    }
  });
});

describe("htmlUnescape follows Python's html.unescape", () => {
  // Values from /usr/bin/python3 (3.11): html.unescape(s)
  it.each([
    ['&amp;amp;', '&amp;'],
    ['&notit; &notin; &ampx &amp', '¬it; ∉ &x &'],
    ['&#0;&#x80;&#150;&#xD800;&#x110000;&#1;&#xFFFF;', '\ufffd€–\ufffd\ufffd'],
    ['&#65&#x42;c &#; &unknown; &AMP;', 'ABc &#; &unknown; &'],
    ['&fjlig;&acE;', 'fj\u223e\u0333'],
  ])('%s', (input, output) => {
    expect(htmlUnescape(input)).toBe(output);
  });
});
