import { readFileSync } from 'node:fs';
import { MB } from './options.js';
import type { ServerProc } from './server.js';

/**
 * The server's memory and CPU over time. RSS comes from /proc (VmRSS) and heap/external from the
 * probe, both after the probe's forced full GC, so garbage not yet collected is not mistaken
 * for growth.
 */

export interface MemorySample {
  atS: number;
  phase: 'start' | 'load' | 'drain' | 'end';
  rssMb: number;
  heapMb: number;
  externalMb: number;
  cpuS: number;
}

/** VmRSS and VmHWM (kB) from /proc (Linux); null elsewhere. */
export function procStatus(pid: number): { rssMb: number; hwmMb: number } | null {
  try {
    const text = readFileSync(`/proc/${pid}/status`, 'utf8');
    const kb = (name: string) => Number(new RegExp(`^${name}:\\s+(\\d+) kB`, 'm').exec(text)?.[1] ?? NaN);
    return { rssMb: kb('VmRSS') / 1024, hwmMb: kb('VmHWM') / 1024 };
  } catch {
    return null;
  }
}

/** CPU seconds (user + system) of a process from /proc/<pid>/stat; NaN elsewhere. */
export function procCpuSeconds(pid: number): number {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    // utime and stime are fields 14 and 15 of the whole line, 12 and 13 after "pid (comm) state".
    return (Number(fields[11]) + Number(fields[12])) / 100; // USER_HZ is 100 on Linux
  } catch {
    return NaN;
  }
}

export class MemorySampler {
  readonly samples: MemorySample[] = [];
  /** Stamped on each sample taken from now on. */
  phase: MemorySample['phase'] = 'start';
  // Samples are chained: a full GC in the server can take longer than the period.
  private chain: Promise<void> = Promise.resolve();
  private timer: NodeJS.Timeout | null = null;

  constructor(
    private readonly srv: Pick<ServerProc, 'pid' | 'mem'>,
    /** Seconds since the soak started. */
    private readonly at: () => number,
  ) {}

  sample(): Promise<void> {
    return (this.chain = this.chain.then(async () => {
      const m = await this.srv.mem();
      const st = procStatus(this.srv.pid);
      if (!m && !st) return;
      this.samples.push({
        atS: this.at(),
        phase: this.phase,
        rssMb: st?.rssMb ?? (m ? m.rss / MB : NaN),
        heapMb: m ? m.heapUsed / MB : NaN,
        externalMb: m ? m.external / MB : NaN,
        cpuS: procCpuSeconds(this.srv.pid),
      });
    }));
  }

  every(ms: number): void {
    this.stop();
    this.timer = setInterval(() => void this.sample(), ms);
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
  }
}
