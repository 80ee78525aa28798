import { pgCall, type PgClient, type PgPool } from '../storage/postgres.js';
import type { Lease, SweepLock } from './sweep-lock.js';

/**
 * A SweepLock that holds across every process sharing the database (DATABASE_URL): a session
 * advisory lock, pg_try_advisory_lock, taken on a connection kept out of the pool until release.
 * The key is the name and the schema of the connection (current_schema()), so deployments (and
 * test files) in other schemas of the same database do not keep each other from sweeping.
 *
 * Should the connection break while held, the server frees the lock with the session: the lease
 * is then `lost`, and the sweep stops after its current batch (another process may have begun).
 */
export class PgSweepLock implements SweepLock {
  constructor(private readonly pool: PgPool) {}

  async tryAcquire(name: string): Promise<Lease | null> {
    return pgCall(async () => {
      const client = await this.pool.connect();
      const state = { lost: false, broken: undefined as Error | undefined };
      // A checked-out client has no listener of the pool's: without one an error would crash the process.
      const onError = (err: Error) => {
        state.lost = true;
        state.broken = err;
      };
      const onEnd = () => (state.lost = true);
      client.on('error', onError);
      client.on('end', onEnd);
      const detach = (err?: Error) => {
        client.removeListener('error', onError);
        client.removeListener('end', onEnd);
        client.release(err);
      };
      let got: boolean;
      try {
        const { rows } = await client.query<{ got: boolean }>(
          `SELECT pg_try_advisory_lock(hashtextextended('sd15-graphql-api ' || $1 || ' ' || current_schema(), 0)) AS got`,
          [name],
        );
        got = rows[0]?.got === true;
      } catch (err) {
        detach(err as Error);
        throw err;
      }
      if (!got) {
        detach();
        return null;
      }
      return new PgLease(client, name, state, detach);
    });
  }
}

class PgLease implements Lease {
  private released = false;

  constructor(
    private readonly client: PgClient,
    private readonly name: string,
    private readonly state: { lost: boolean; broken: Error | undefined },
    private readonly detach: (err?: Error) => void,
  ) {}

  get lost(): boolean {
    return this.state.lost;
  }

  async release(): Promise<void> {
    if (this.released) return;
    this.released = true;
    if (this.state.lost) {
      // The session is gone, and the lock with it: the connection is discarded.
      this.detach(this.state.broken ?? new Error('the connection holding the sweep lock ended'));
      return;
    }
    try {
      await this.client.query(`SELECT pg_advisory_unlock(hashtextextended('sd15-graphql-api ' || $1 || ' ' || current_schema(), 0))`, [
        this.name,
      ]);
      this.detach();
    } catch (err) {
      // Discarding the connection ends its session, which frees the lock too.
      this.detach(err as Error);
    }
  }
}
