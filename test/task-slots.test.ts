import { describe, expect, it } from 'vitest';
import { TaskSlots } from '../src/concurrency/task-slots.js';

describe('TaskSlots', () => {
  it('runs at most its limit at once, frees a slot when a task ends or throws, and idle() waits for all', async () => {
    const errors: unknown[] = [];
    const slots = new TaskSlots(2, (err) => errors.push(err));
    const releases: (() => void)[] = [];
    const task =
      (fail = false) =>
      () =>
        new Promise<void>((resolve, reject) => releases.push(() => (fail ? reject(new Error('boom')) : resolve())));
    let settled = 0;
    slots.run(task(), () => settled++);
    slots.run(task(true), () => settled++);
    expect([slots.free, slots.running]).toEqual([0, 2]);
    expect(() => slots.run(task(), () => {})).toThrow(/no free slot/);

    let idle = false;
    const waiting = slots.idle().then(() => (idle = true));
    releases[1]!();
    await new Promise((r) => setTimeout(r, 0));
    expect([slots.free, settled, idle]).toEqual([1, 1, false]);
    expect(errors.map((e) => (e as Error).message)).toEqual(['boom']);
    releases[0]!();
    await waiting;
    expect([slots.free, settled, idle]).toEqual([2, 2, true]);
    await slots.idle(); // nothing running: at once
  });
});
