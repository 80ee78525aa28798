import { readdirSync, readFileSync } from 'node:fs';
import os from 'node:os';
import { procCpuSeconds } from '../soak/sampler.js';

/**
 * Who had the cores during a batch (Linux /proc; NaN elsewhere): CPU seconds of each process of
 * ours, of every postgres and redis-server process on the machine, of this process (the client),
 * and of the whole machine (/proc/stat), read at the start and at the end; and the run queue
 * (procs_running in /proc/stat, runnable threads right now, this sampler's own included) sampled
 * every 100 ms in between, whose mean is the load the batch put on the cores.
 */

export interface CpuSnapshot {
  atMs: number;
  procs: Map<string, number>;
  postgres: number;
  redis: number;
  client: number;
  machineBusy: number;
}

export interface CpuFigures {
  /** Percent of one core, per process label (ours). */
  procs: Map<string, number>;
  postgres: number;
  redis: number;
  client: number;
  /** The whole machine, percent of one core (2 cores: at most 200). */
  machine: number;
  /** machine minus everything named above: other people's work, the kernel. */
  other: number;
  cores: number;
  /** Mean and largest run queue seen (runnable threads, machine-wide). */
  runQueueMean: number;
  runQueueMax: number;
  loadavg1: number;
}

const HZ = 100; // USER_HZ on Linux

function machineBusySeconds(): number {
  try {
    const line = readFileSync('/proc/stat', 'utf8').split('\n')[0]!;
    const f = line.trim().split(/\s+/).slice(1).map(Number);
    // user nice system idle iowait irq softirq steal
    const busy = f[0]! + f[1]! + f[2]! + f[5]! + f[6]! + (f[7] ?? 0);
    return busy / HZ;
  } catch {
    return NaN;
  }
}

function runQueue(): number {
  try {
    return Number(/^procs_running (\d+)/m.exec(readFileSync('/proc/stat', 'utf8'))?.[1] ?? NaN);
  } catch {
    return NaN;
  }
}

/** CPU seconds of every process whose command name is one of these. */
function byName(names: string[]): number[] {
  const sums = names.map(() => 0);
  let pids: string[];
  try {
    pids = readdirSync('/proc').filter((d) => /^\d+$/.test(d));
  } catch {
    return names.map(() => NaN);
  }
  for (const pid of pids) {
    let stat: string;
    try {
      stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    } catch {
      continue; // gone
    }
    const comm = stat.slice(stat.indexOf('(') + 1, stat.lastIndexOf(')'));
    const i = names.indexOf(comm);
    if (i < 0) continue;
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    sums[i]! += (Number(fields[11]) + Number(fields[12])) / HZ;
  }
  return sums;
}

export function cpuSnapshot(procs: { label: string; pid: number }[]): CpuSnapshot {
  const [postgres, redis] = byName(['postgres', 'redis-server']);
  const u = process.cpuUsage();
  return {
    atMs: performance.now(),
    procs: new Map(procs.map((p) => [p.label, procCpuSeconds(p.pid)])),
    postgres: postgres!,
    redis: redis!,
    client: (u.user + u.system) / 1e6,
    machineBusy: machineBusySeconds(),
  };
}

/** Samples the run queue until stopped; then the figures between the two snapshots. */
export function startCpuWindow(procs: { label: string; pid: number }[]): { end(): CpuFigures } {
  const first = cpuSnapshot(procs);
  const queue: number[] = [];
  const timer = setInterval(() => queue.push(runQueue()), 100);
  return {
    end() {
      clearInterval(timer);
      const last = cpuSnapshot(procs);
      const wallS = (last.atMs - first.atMs) / 1000;
      const pct = (a: number, b: number) => Math.max(0, ((b - a) / wallS) * 100);
      const procPct = new Map([...last.procs].map(([label, s]) => [label, pct(first.procs.get(label) ?? NaN, s)]));
      const postgres = pct(first.postgres, last.postgres);
      const redis = pct(first.redis, last.redis);
      const client = pct(first.client, last.client);
      const machine = pct(first.machineBusy, last.machineBusy);
      const ours = [...procPct.values()].reduce((a, b) => a + b, 0) + postgres + redis + client;
      const sampled = queue.filter(Number.isFinite);
      return {
        procs: procPct,
        postgres,
        redis,
        client,
        machine,
        other: Math.max(0, machine - ours),
        cores: os.cpus().length,
        runQueueMean: sampled.length ? sampled.reduce((a, b) => a + b, 0) / sampled.length : NaN,
        runQueueMax: sampled.length ? Math.max(...sampled) : NaN,
        loadavg1: os.loadavg()[0]!,
      };
    },
  };
}
