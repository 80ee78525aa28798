#!/usr/bin/env node
// The sd15 command. tsx runs the TypeScript sources as they are (no build step), as npm start does.
import { register } from 'tsx/esm/api';

register();
const { main } = await import('../src/cli/main.ts');
const code = await main(process.argv.slice(2));
// Exit once what was written has been flushed (pipes may be asynchronous), without waiting for
// idle keep-alive sockets to time out.
process.stdout.write('', () => process.stderr.write('', () => process.exit(code)));
