import { describe, expect, it } from 'vitest';
import { backoffDelay } from '../src/retry/backoff.js';

describe('backoffDelay', () => {
  it('doubles from the base, up to the cap', () => {
    expect([0, 1, 2, 3, 4, 5].map((n) => backoffDelay(n, { baseMs: 250, maxMs: 5_000 }))).toEqual([250, 500, 1_000, 2_000, 4_000, 5_000]);
    expect(backoffDelay(30, { baseMs: 1 })).toBe(2 ** 30);
  });

  it('spreads retries with full jitter over [0, delay) and with equal jitter over [delay/2, delay)', () => {
    const at = (r: number) => () => r;
    expect(backoffDelay(2, { baseMs: 100, jitter: 'full' }, at(0))).toBe(0);
    expect(backoffDelay(2, { baseMs: 100, jitter: 'full' }, at(0.5))).toBe(200);
    expect(backoffDelay(2, { baseMs: 100, jitter: 'equal' }, at(0))).toBe(200);
    expect(backoffDelay(2, { baseMs: 100, jitter: 'equal' }, at(0.999))).toBeCloseTo(399.8);
    expect(backoffDelay(10, { baseMs: 100, maxMs: 1_000, jitter: 'equal' }, at(0.5))).toBe(750);
  });
});
