interface Entry<T> {
  id: string;
  item: T;
  /** The turn this entry is served in (see FairQueue). */
  round: number;
  /** Arrival order: breaks ties between owners in the same round. */
  seq: number;
  removed: boolean;
}

interface OwnerQueue<T> {
  entries: Entry<T>[];
  /** entries[head] is this owner's next live entry. */
  head: number;
  /** Live (not removed) entries. */
  live: number;
}

/**
 * Waiting items of several owners (API keys), taken in turn rather than first come first
 * served, so that one owner's backlog cannot hold back everyone else: each owner's items keep
 * their own order, and the owners alternate. An owner with nothing waiting goes next: its first
 * item waits for no more than one item of each other owner.
 *
 * Start-time fair queueing with unit costs: an item's round is one after its owner's previous
 * item, and never earlier than the round of the item taken last; items are taken by round, then
 * by arrival. So an owner that queues 100 items has them in rounds r, r+1, … r+99,
 * and another owner's first item, arriving later, gets the round being served now.
 *
 * Removal is lazy (a canceled item is skipped when reached), and positions count removed items
 * ahead until then, as the FIFO it replaces did: cheap, and rarely off by much. An owner's items
 * behind a removed one keep their rounds (it loses that turn).
 */
export class FairQueue<T> {
  private readonly owners = new Map<string, OwnerQueue<T>>();
  private readonly byId = new Map<string, { owner: string; entry: Entry<T> }>();
  /**
   * The round of each owner's newest item, kept after its queue empties: an owner whose items
   * are taken as fast as it adds them must not get a turn in every round (it would starve the
   * owners waiting for the next). Entries older than the round served carry nothing and are pruned.
   */
  private readonly lastRound = new Map<string, number>();
  /** The round of the item taken last. */
  private round = 0;
  private seq = 0;

  /** Items waiting (removed ones not counted). */
  get size(): number {
    return this.byId.size;
  }

  has(id: string): boolean {
    return this.byId.has(id);
  }

  /** Queues an item behind its owner's others; false (and nothing changes) when the id is already waiting. */
  push(owner: string, id: string, item: T): boolean {
    if (this.byId.has(id)) return false;
    let queue = this.owners.get(owner);
    if (!queue) this.owners.set(owner, (queue = { entries: [], head: 0, live: 0 }));
    const round = Math.max(this.round, (this.lastRound.get(owner) ?? -1) + 1);
    this.lastRound.set(owner, round);
    if (this.lastRound.size > 2 * this.owners.size + 1024) this.prune();
    const entry: Entry<T> = { id, item, round, seq: this.seq++, removed: false };
    queue.entries.push(entry);
    queue.live++;
    this.byId.set(id, { owner, entry });
    return true;
  }

  /** Takes the next item: the earliest round, then the earliest arrival. */
  shift(): { id: string; owner: string; item: T } | undefined {
    let best: { owner: string; queue: OwnerQueue<T>; entry: Entry<T> } | undefined;
    for (const [owner, queue] of this.owners) {
      const entry = queue.entries[queue.head]!;
      if (!best || entry.round < best.entry.round || (entry.round === best.entry.round && entry.seq < best.entry.seq)) {
        best = { owner, queue, entry };
      }
    }
    if (!best) return undefined;
    const { owner, queue, entry } = best;
    this.round = entry.round;
    this.byId.delete(entry.id);
    queue.live--;
    this.advance(owner, queue, true);
    return { id: entry.id, owner, item: entry.item };
  }

  /** Drops a waiting item; false when it is not waiting. */
  remove(id: string): boolean {
    const found = this.byId.get(id);
    if (!found) return false;
    this.byId.delete(id);
    const queue = this.owners.get(found.owner)!;
    found.entry.removed = true;
    queue.live--;
    this.advance(found.owner, queue, false);
    return true;
  }

  /** Items taken before this one if nobody new arrives; null when it is not waiting. */
  position(id: string): number | null {
    const found = this.byId.get(id);
    if (!found) return null;
    const { round, seq } = found.entry;
    let ahead = 0;
    for (const queue of this.owners.values()) {
      // Entries of one owner are in (round, seq) order: the first not before this one, by bisection.
      let lo = queue.head;
      let hi = queue.entries.length;
      while (lo < hi) {
        const mid = (lo + hi) >>> 1;
        const e = queue.entries[mid]!;
        if (e.round < round || (e.round === round && e.seq < seq)) lo = mid + 1;
        else hi = mid;
      }
      ahead += lo - queue.head;
    }
    return ahead;
  }

  private prune(): void {
    for (const [owner, round] of this.lastRound) if (round < this.round) this.lastRound.delete(owner);
  }

  /** Past the taken or removed entries at the head; forgets an owner with nothing left. */
  private advance(owner: string, queue: OwnerQueue<T>, taken: boolean): void {
    if (queue.live === 0) {
      this.owners.delete(owner);
      return;
    }
    if (taken) {
      // Cleared at once: an item can carry megabytes (a job's data: URL images).
      queue.entries[queue.head] = undefined as never;
      queue.head++;
    }
    while (queue.entries[queue.head]?.removed !== false) queue.entries[queue.head++] = undefined as never;
    if (queue.head > 1024 && queue.head * 2 > queue.entries.length) {
      queue.entries = queue.entries.slice(queue.head);
      queue.head = 0;
    }
  }
}
