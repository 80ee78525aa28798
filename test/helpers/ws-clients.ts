import { createClient, type Client } from 'graphql-ws';
import WebSocket from 'ws';

/**
 * The graphql-ws clients a test file opens on its server processes: each lazy (it connects on its
 * first subscription), without retries (a dead replica must show, not be hidden), closed together.
 */
export class WsClients {
  private readonly clients: Client[] = [];

  open(url: string, apiKey: string): Client {
    const client = createClient({
      url: `${url.replace('http', 'ws')}/graphql`,
      webSocketImpl: WebSocket,
      connectionParams: { apiKey },
      retryAttempts: 0,
      lazy: true,
    });
    this.clients.push(client);
    return client;
  }

  async disposeAll(): Promise<void> {
    await Promise.all(this.clients.splice(0).map(async (c) => c.dispose()));
  }
}
