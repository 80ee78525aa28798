/**
 * Prints the 77 input ids the engine's CLIP tokenizer gives each prompt, for cases.py (Python here
 * has no transformers; the tokenizer itself is checked against CLIPTokenizer's source by
 * test/tokenizer-parity.test.ts). Usage: npx tsx tokenize.ts <tokenizer dir> '<JSON array of prompts>'
 */
import { ClipTokenizer } from '../../../src/diffusion/tokenizer/clip-tokenizer.js';

const [dir, prompts] = process.argv.slice(2);
if (!dir || !prompts) throw new Error('usage: tokenize.ts <tokenizer dir> <JSON array of prompts>');
const tokenizer = await ClipTokenizer.fromFiles(dir);
const texts = JSON.parse(prompts) as string[];
process.stdout.write(JSON.stringify(texts.map((t) => Array.from(tokenizer.encodeForModel(t)))) + '\n');
