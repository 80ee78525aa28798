// `npx tsx bench/soak.ts` still runs the soak alone; the soak itself is in bench/soak/.
import { soakCli } from './soak/index.js';
await soakCli();
