/** The seeds the API accepts, and the check every generator here makes. */
export const MAX_SEED = 2147483647;

export function assertSeed(seed: number): void {
  if (!Number.isInteger(seed) || seed < 0 || seed > MAX_SEED) {
    throw new Error(`seed must be an integer in [0, ${MAX_SEED}], got ${seed}`);
  }
}

export function assertCount(count: number): void {
  if (!Number.isInteger(count) || count < 0) throw new Error(`randn: count must be a non-negative integer, got ${count}`);
}
