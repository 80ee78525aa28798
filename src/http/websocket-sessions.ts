import type { LeaseCounter } from '../limits/leases.js';

export interface WebSocketLimits {
  /** Open connections one API key may hold; 0: no cap. */
  maxConnectionsPerKey: number;
  /** Operations (subscriptions) one API key may have running over all its connections; 0: no cap. */
  maxSubscriptionsPerKey: number;
}

/** What the server needs to know of one open connection: whose it is, and how to end it. */
export interface SessionSocket {
  close(code: number, reason: string): void;
}

interface Session {
  /** This process's name for the connection (in the shared counts). */
  id: string;
  keyId: string;
  socket: SessionSocket;
  operations: Set<string>;
}

/** graphql-ws close codes in the 4400s mirror HTTP: 4403 forbidden, 4429 too many. */
export const CLOSE_FORBIDDEN = 4403;
export const CLOSE_TOO_MANY = 4429;

/**
 * The WebSocket connections of each API key, with their running operations: enforces the
 * per-key caps, and ends the sessions of a key that was revoked. Connections without a key are
 * counted per client address (they can only introspect); graphql-ws's init timeout bounds idle ones.
 *
 * The caps are checked here, for this process, and, with `shared` (API replicas on one Redis),
 * over every replica: a connection or operation counts there too, under a lease this process
 * renews (limits/leases.ts), so a replica that dies stops counting within one lease.
 */
export class WebSocketSessions<Ctx extends object> {
  private readonly sessions = new Map<Ctx, Session>();
  private readonly byKey = new Map<string, Set<Session>>();
  private seq = 0;

  constructor(
    private readonly limits: WebSocketLimits,
    private readonly shared: LeaseCounter | null = null,
  ) {}

  /** Registers a connection; resolves to false (and registers nothing) when the key has too many. */
  async open(ctx: Ctx, keyId: string, socket: SessionSocket): Promise<boolean> {
    const cap = this.limits.maxConnectionsPerKey;
    const mine = this.byKey.get(keyId) ?? new Set<Session>();
    if (cap > 0 && mine.size >= cap) return false;
    const session: Session = { id: String(this.seq++), keyId, socket, operations: new Set<string>() };
    mine.add(session);
    this.byKey.set(keyId, mine);
    this.sessions.set(ctx, session);
    if (!this.shared || cap === 0) return true;
    const counted = await this.shared.acquire(connectionsOf(keyId), session.id, cap);
    // Closed while being counted: close() released it.
    if (this.sessions.get(ctx) !== session) return false;
    if (!counted) this.close(ctx);
    return counted;
  }

  close(ctx: Ctx): void {
    const session = this.sessions.get(ctx);
    if (!session) return;
    this.sessions.delete(ctx);
    const mine = this.byKey.get(session.keyId);
    mine?.delete(session);
    if (mine?.size === 0) this.byKey.delete(session.keyId);
    for (const id of session.operations) this.shared?.release(operationsOf(session.keyId), `${session.id}:${id}`);
    session.operations.clear();
    this.shared?.release(connectionsOf(session.keyId), session.id);
  }

  /** Counts an operation starting; resolves to null when allowed, else why not. */
  async startOperation(ctx: Ctx, id: string): Promise<string | null> {
    const session = this.sessions.get(ctx);
    if (!session) return null;
    const cap = this.limits.maxSubscriptionsPerKey;
    const refusal = `this API key already has ${cap} subscriptions open, the most allowed at once; complete some first`;
    if (cap > 0 && this.operationsOf(session.keyId) >= cap) return refusal;
    session.operations.add(id);
    if (!this.shared || cap === 0) return null;
    const counted = await this.shared.acquire(operationsOf(session.keyId), `${session.id}:${id}`, cap);
    if (!counted) session.operations.delete(id);
    return counted ? null : refusal;
  }

  endOperation(ctx: Ctx, id: string): void {
    const session = this.sessions.get(ctx);
    if (!session?.operations.delete(id)) return;
    this.shared?.release(operationsOf(session.keyId), `${session.id}:${id}`);
  }

  /** The owners (key ids, or anonymous addresses) with open connections. */
  owners(): string[] {
    return [...this.byKey.keys()];
  }

  /** Closes every connection whose key is no longer valid; returns how many were closed. */
  closeRevoked(isValid: (keyId: string) => boolean): number {
    let closed = 0;
    for (const [keyId, mine] of this.byKey) {
      if (isValid(keyId)) continue;
      for (const session of mine) {
        session.socket.close(CLOSE_FORBIDDEN, 'the API key was revoked');
        closed++;
      }
    }
    return closed;
  }

  connectionCount(keyId: string): number {
    return this.byKey.get(keyId)?.size ?? 0;
  }

  private operationsOf(keyId: string): number {
    let n = 0;
    for (const session of this.byKey.get(keyId) ?? []) n += session.operations.size;
    return n;
  }
}

const connectionsOf = (keyId: string) => `connections:${keyId}`;
const operationsOf = (keyId: string) => `operations:${keyId}`;
