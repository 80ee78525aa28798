/** Writes the tiny CLIP tokenizer's vocab.json and merges.txt (with its #version line) into a folder. */
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { buildTinyTokenizer } from '../tiny-models/tokenizer.js';

const dir = process.argv[2];
if (!dir) throw new Error('usage: tsx scripts/reference/write-tiny-tokenizer.ts <dir>');
mkdirSync(dir, { recursive: true });
const { vocab, merges } = buildTinyTokenizer();
writeFileSync(join(dir, 'vocab.json'), JSON.stringify(vocab));
writeFileSync(join(dir, 'merges.txt'), `#version: 0.2\n${merges.join('\n')}\n`);
