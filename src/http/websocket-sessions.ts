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
 * not counted here (they can only introspect); graphql-ws's init timeout bounds idle ones.
 */
export class WebSocketSessions<Ctx extends object> {
  private readonly sessions = new Map<Ctx, Session>();
  private readonly byKey = new Map<string, Set<Session>>();

  constructor(private readonly limits: WebSocketLimits) {}

  /** Registers a connection; returns false (and registers nothing) when the key has too many. */
  open(ctx: Ctx, keyId: string, socket: SessionSocket): boolean {
    const mine = this.byKey.get(keyId) ?? new Set<Session>();
    if (this.limits.maxConnectionsPerKey > 0 && mine.size >= this.limits.maxConnectionsPerKey) return false;
    const session = { keyId, socket, operations: new Set<string>() };
    mine.add(session);
    this.byKey.set(keyId, mine);
    this.sessions.set(ctx, session);
    return true;
  }

  close(ctx: Ctx): void {
    const session = this.sessions.get(ctx);
    if (!session) return;
    this.sessions.delete(ctx);
    const mine = this.byKey.get(session.keyId);
    mine?.delete(session);
    if (mine?.size === 0) this.byKey.delete(session.keyId);
  }

  /** Counts an operation starting; null when allowed, else why not. */
  startOperation(ctx: Ctx, id: string): string | null {
    const session = this.sessions.get(ctx);
    if (!session) return null;
    const cap = this.limits.maxSubscriptionsPerKey;
    if (cap > 0 && this.operationsOf(session.keyId) >= cap) {
      return `this API key already has ${cap} subscriptions open, the most allowed at once; complete some first`;
    }
    session.operations.add(id);
    return null;
  }

  endOperation(ctx: Ctx, id: string): void {
    this.sessions.get(ctx)?.operations.delete(id);
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
