// `npx tsx bench/scale.ts` runs the scale-out section alone; the section itself is in bench/scale/.
import { scaleCli } from './scale/index.js';
await scaleCli();
