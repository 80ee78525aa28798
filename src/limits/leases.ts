import { randomUUID } from 'node:crypto';
import { RedisScript, UNAVAILABLE, type LimitsRedis } from './limits-redis.js';

/**
 * Things held open now (WebSocket connections, running operations) counted per group (an API
 * key's connections, its operations) over every replica, against a cap.
 */
export interface LeaseCounter {
  /** Counts `member` in `group` unless the group holds `cap` already (0: no cap); false then. */
  acquire(group: string, member: string, cap: number): Promise<boolean>;
  /** The member is closed: it no longer counts. */
  release(group: string, member: string): void;
  /** Releases everything this process holds. */
  close(): Promise<void>;
}

const NOW = `local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)`;

/**
 * KEYS[1] the group's sorted set (members scored by when their lease runs out); ARGV: member,
 * cap (0: none), lease (ms). Drops expired leases, then adds the member unless the group is
 * full. Returns 1 when counted.
 */
const ACQUIRE = new RedisScript(`
${NOW}
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
local cap = tonumber(ARGV[2])
if cap > 0 and not redis.call('ZSCORE', KEYS[1], ARGV[1]) and redis.call('ZCARD', KEYS[1]) >= cap then return 0 end
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[3]), ARGV[1])
redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[3]) * 2)
return 1
`);

/** KEYS[1] the group's sorted set; ARGV: lease (ms), then the members this process holds in it. */
const REFRESH = new RedisScript(`
${NOW}
local expiry = now + tonumber(ARGV[1])
for i = 2, #ARGV do redis.call('ZADD', KEYS[1], expiry, ARGV[i]) end
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[1]) * 2)
return 1
`);

type State = 'acquiring' | 'held' | 'released';

/**
 * Leases on Redis (REDIS_URL): a sorted set per group, `<prefix>:limits:ws:<group>`, whose
 * members (`<process>:<member>`) are scored by when their lease runs out. This process renews
 * the leases of what it holds every third of the lease, so a replica that dies (SIGKILL, a lost
 * machine) stops counting within one lease: its sockets do not hold a key's cap for ever.
 * Expired members are dropped whenever a group is counted or renewed, and the whole set expires
 * when no process renews it.
 *
 * Redis unreachable: fails open (counted here, refused only by this replica's own caps), with
 * a log line; the renewal puts what is held back once Redis answers again.
 */
export class RedisLeases implements LeaseCounter {
  private readonly process = randomUUID();
  private readonly states = new Map<string, { group: string; member: string; state: State }>();
  /** Members held, by group: what each renewal sends. */
  private readonly held = new Map<string, Set<string>>();
  private readonly timer: NodeJS.Timeout;

  constructor(
    private readonly shared: LimitsRedis,
    private readonly leaseMs: number,
  ) {
    this.timer = setInterval(() => void this.renew(), Math.max(50, Math.floor(leaseMs / 3)));
    this.timer.unref();
  }

  private keyOf(group: string): string {
    return this.shared.key('ws', group);
  }

  private fullName(member: string): string {
    return `${this.process}:${member}`;
  }

  async acquire(group: string, member: string, cap: number): Promise<boolean> {
    const id = `${group}\n${member}`;
    const entry = { group, member, state: 'acquiring' as State };
    this.states.set(id, entry);
    const reply = await this.shared.attempt('WebSocket caps', 'each replica applies the caps on its own until it is back', (redis) =>
      ACQUIRE.run(redis, [this.keyOf(group)], [this.fullName(member), cap, this.leaseMs]),
    );
    if (entry.state === 'released') {
      // Closed while being counted: uncount it now that the count has landed.
      this.states.delete(id);
      if (reply === 1) this.remove(group, member);
      return false;
    }
    if (reply !== UNAVAILABLE && reply !== 1) {
      this.states.delete(id);
      return false;
    }
    entry.state = 'held';
    let set = this.held.get(group);
    if (!set) this.held.set(group, (set = new Set()));
    set.add(member);
    return true;
  }

  release(group: string, member: string): void {
    const id = `${group}\n${member}`;
    const entry = this.states.get(id);
    if (!entry) return;
    if (entry.state === 'acquiring') {
      entry.state = 'released';
      return;
    }
    this.states.delete(id);
    const set = this.held.get(group);
    set?.delete(member);
    if (set?.size === 0) this.held.delete(group);
    this.remove(group, member);
  }

  async close(): Promise<void> {
    clearInterval(this.timer);
    const removals = [...this.held].map(([group, members]) =>
      this.shared.attempt('WebSocket caps', 'their leases run out by themselves', (redis) =>
        redis.zrem(this.keyOf(group), ...[...members].map((m) => this.fullName(m))),
      ),
    );
    this.held.clear();
    this.states.clear();
    await Promise.all(removals);
  }

  /** Members this process holds now, all groups together (for tests and gauges). */
  heldCount(): number {
    let n = 0;
    for (const set of this.held.values()) n += set.size;
    return n;
  }

  private remove(group: string, member: string): void {
    // Best effort: one not removed stops being renewed, and its lease runs out.
    void this.shared.attempt('WebSocket caps', 'the lease runs out by itself', (redis) =>
      redis.zrem(this.keyOf(group), this.fullName(member)),
    );
  }

  private async renew(): Promise<void> {
    if (!this.shared.ready) return;
    await Promise.all(
      [...this.held].map(([group, members]) =>
        this.shared.attempt('WebSocket caps', 'renewed on the next round', (redis) =>
          REFRESH.run(redis, [this.keyOf(group)], [this.leaseMs, ...[...members].map((m) => this.fullName(m))]),
        ),
      ),
    );
  }
}
