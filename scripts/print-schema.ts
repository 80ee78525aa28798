import { mkdirSync, writeFileSync } from 'node:fs';
import { printSchema } from 'graphql';
import { schema } from '../src/schema/index.js';

/** Writes the SDL that the Pothos schema produces; committed, and checked for staleness in CI. */
const out = new URL('../schema/schema.graphql', import.meta.url);
mkdirSync(new URL('.', out), { recursive: true });
writeFileSync(out, `${printSchema(schema)}\n`);
console.log(`wrote ${out.pathname}`);
