import { request } from 'node:http';
import { getIntrospectionQuery } from 'graphql';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import { JobStatusDocument, Text2ImageDocument } from '../src/client/generated/graphql.js';
import { collect, startTestServer, waitFor, type TestServer } from './helpers/test-server.js';

/** Limits on what one request or one key may ask of the server, over HTTP and WebSocket. */
describe('request and connection limits', () => {
  let server: TestServer;

  beforeAll(async () => {
    server = await startTestServer({
      env: {
        MAX_REQUEST_BODY_BYTES: '8192',
        GRAPHQL_MAX_DEPTH: '4',
        GRAPHQL_MAX_ALIASES: '3',
        GRAPHQL_MAX_TOKENS: '300',
        WS_MAX_CONNECTIONS_PER_KEY: '2',
        WS_MAX_SUBSCRIPTIONS_PER_KEY: '2',
        WS_CONNECTION_INIT_TIMEOUT_MS: '300',
      },
    });
  });
  afterAll(() => server.stop());

  const post = (query: string, headers: Record<string, string> = {}) =>
    fetch(`${server.url}/graphql`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'api-key': server.key, ...headers },
      body: JSON.stringify({ query }),
    });
  const messageOf = async (res: Response) => {
    const body = (await res.json()) as { data?: unknown; errors: { message: string }[] };
    expect(body.data).toBeUndefined(); // refused before execution
    return body.errors[0]!.message;
  };

  it('refuses operations that are too deep, have too many aliases or too many tokens, before running them', async () => {
    // Refused at validation: yoga answers 200 or 400 depending on the media type; never data.
    const strict = { accept: 'application/graphql-response+json' };
    const deep = await post('{ jobs { edges { node { parameters { prompt } } } } }', strict);
    expect([200, 400]).toContain(deep.status);
    expect(await messageOf(deep)).toMatch(/depth limit of 4/i);

    const aliases = await post('{ a: models { id } b: models { id } c: models { id } d: models { id } }', strict);
    expect([200, 400]).toContain(aliases.status);
    expect(await messageOf(aliases)).toMatch(/aliases limit of 3/i);

    const tokens = await post(`{ ${Array.from({ length: 200 }, () => 'models { id }').join(' ')} }`, strict);
    expect([200, 400]).toContain(tokens.status);
    expect(await messageOf(tokens)).toMatch(/token limit of 300/i);

    // Ordinary operations and introspection (GraphiQL, codegen) still work.
    expect((await post('{ models { id } }')).status).toBe(200);
    expect((await post('{ __schema { types { name fields { name type { name ofType { name ofType { name } } } } } } }')).status).toBe(200);
  });

  it("answers the standard introspection query (GraphiQL's and codegen's) and refuses introspection nested much deeper", async () => {
    const standard = await fetch(`${server.url}/graphql`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({
        query: getIntrospectionQuery({
          descriptions: true,
          specifiedByUrl: true,
          directiveIsRepeatable: true,
          schemaDescription: true,
          inputValueDeprecation: true,
        }),
      }),
    });
    const body = (await standard.json()) as { data?: { __schema: { types: unknown[] } }; errors?: unknown };
    expect(body.errors).toBeUndefined();
    expect(body.data!.__schema.types.length).toBeGreaterThan(20);

    const ofTypes = (n: number): string => (n === 0 ? 'name' : `name ofType { ${ofTypes(n - 1)} }`);
    // __schema types fields type + 17 ofType: 21 levels, over the default limit of 20.
    const deep = await post(`{ __schema { types { fields { type { ${ofTypes(17)} } } } } }`, { 'api-key': '' });
    expect(await messageOf(deep)).toMatch(/introspection nested 2\d levels deep; at most 20/);
    // The same hidden in a fragment.
    const viaFragment = await post(`{ __schema { types { ...T } } } fragment T on __Type { fields { type { ${ofTypes(17)} } } }`);
    expect(await messageOf(viaFragment)).toMatch(/introspection nested 2\d levels deep; at most 20/);
  });

  it('answers 413 for a body over MAX_REQUEST_BODY_BYTES on GraphQL, uploads and REST, and 411 for a chunked GraphQL body', async () => {
    const big = 'x'.repeat(10_000);
    const graphql = await post(`mutation { text2image(input: { prompt: "${big}" }) { id } }`);
    expect(graphql.status).toBe(413);
    expect(await messageOf(graphql)).toMatch(/larger than 8192 bytes/);

    const form = new FormData();
    form.set(
      'operations',
      JSON.stringify({
        query: 'mutation ($f: File!) { uploadEmbedding(file: $f, name: "n", triggerWord: "tw") { id } }',
        variables: { f: null },
      }),
    );
    form.set('map', JSON.stringify({ 0: ['variables.f'] }));
    form.set('0', new Blob([Buffer.alloc(20_000)]), 'big.safetensors');
    const upload = await fetch(`${server.url}/graphql`, { method: 'POST', headers: { 'api-key': server.key }, body: form });
    expect(upload.status).toBe(413);

    const rest = await fetch(`${server.url}/sd/text2image/v1`, {
      method: 'POST',
      headers: { 'api-key': server.key },
      body: JSON.stringify({ prompt: big }),
    });
    expect(rest.status).toBe(413);
    expect(await rest.json()).toMatchObject({ status: 'FAILURE', error: expect.stringMatching(/larger than 8192 bytes/) });

    const chunked = await new Promise<number>((resolve, reject) => {
      const req = request(
        `${server.url}/graphql`,
        { method: 'POST', headers: { 'content-type': 'application/json', 'transfer-encoding': 'chunked' } },
        (res) => {
          res.resume();
          resolve(res.statusCode ?? 0);
        },
      );
      req.on('error', reject);
      req.write('{"query":"{ models { id } }"}');
      req.end();
    });
    expect(chunked).toBe(411);
  });

  const openSocket = () => {
    const socket = new WebSocket(`${server.url.replace('http', 'ws')}/graphql`, 'graphql-transport-ws');
    const closed = new Promise<number>((resolve) => socket.once('close', (code) => resolve(code)));
    return { socket, closed, opened: new Promise((r) => socket.once('open', r)) };
  };
  const init = (socket: WebSocket, key = server.key) => {
    socket.send(JSON.stringify({ type: 'connection_init', payload: { apiKey: key } }));
    return new Promise<string>((resolve) => socket.once('message', (m) => resolve(JSON.parse(String(m)).type as string)));
  };

  it('closes a socket that never sends connection_init (4408), and a key’s (or an anonymous address’s) connections past the cap (4429)', async () => {
    const silent = openSocket();
    expect(await silent.closed).toBe(4408);

    const sockets = [openSocket(), openSocket(), openSocket()];
    await Promise.all(sockets.map((s) => s.opened));
    expect(await init(sockets[0]!.socket)).toBe('connection_ack');
    expect(await init(sockets[1]!.socket)).toBe('connection_ack');
    void init(sockets[2]!.socket);
    expect(await sockets[2]!.closed).toBe(4429);
    // Another key is not affected; a closed connection frees its place.
    const other = openSocket();
    await other.opened;
    expect(await init(other.socket, await server.newKey('other'))).toBe('connection_ack');
    sockets[0]!.socket.close();
    await sockets[0]!.closed;
    const again = openSocket();
    await again.opened;
    expect(await init(again.socket)).toBe('connection_ack');
    for (const s of [sockets[1]!, other, again]) s.socket.close();

    // Without a key (introspection only), the same cap counts per client address.
    const anonymous = [openSocket(), openSocket(), openSocket()];
    await Promise.all(anonymous.map((s) => s.opened));
    const hello = (socket: WebSocket) => {
      socket.send(JSON.stringify({ type: 'connection_init', payload: {} }));
      return new Promise<string>((resolve) => socket.once('message', (m) => resolve(JSON.parse(String(m)).type as string)));
    };
    expect(await hello(anonymous[0]!.socket)).toBe('connection_ack');
    expect(await hello(anonymous[1]!.socket)).toBe('connection_ack');
    void hello(anonymous[2]!.socket);
    expect(await anonymous[2]!.closed).toBe(4429);
    for (const s of anonymous.slice(0, 2)) s.socket.close();
  });

  it('refuses a key’s subscriptions past its cap with RATE_LIMITED; a completed one frees its place', async () => {
    server.upstream.behaviour.hold = true;
    const ids = await Promise.all(
      [1, 2, 3].map(async (i) => (await server.gql(Text2ImageDocument, { input: { prompt: `held ${i}` } })).data!.text2image.id),
    );
    const client = server.ws();
    const first = collect(client, JobStatusDocument, { id: ids[0]! }, 20_000);
    const second = collect(client, JobStatusDocument, { id: ids[1]! }, 20_000);
    await waitFor(async () => (await server.metrics()).sd_job_subscriptions! >= 2);
    const third = await collect(client, JobStatusDocument, { id: ids[2]! });
    expect(third.errors.flat()).toEqual([
      expect.objectContaining({ message: expect.stringMatching(/already has 2 subscriptions open/), extensions: { code: 'RATE_LIMITED' } }),
    ]);

    server.upstream.behaviour.hold = false;
    server.upstream.release();
    expect((await first).errors).toEqual([]);
    expect((await second).errors).toEqual([]);
    const fourth = await collect(client, JobStatusDocument, { id: ids[2]! }, 20_000);
    expect(fourth.errors).toEqual([]);
  });

  it('closes the open WebSockets of a key as soon as it is revoked (4403)', async () => {
    const key = await server.newKey('soon revoked');
    const conn = openSocket();
    await conn.opened;
    expect(await init(conn.socket, key)).toBe('connection_ack');
    const record = (await server.app.keys.list()).find((k) => k.name === 'soon revoked')!;
    const started = Date.now();
    expect(await server.app.keys.revoke(record.id)).toBe(true);
    expect(await conn.closed).toBe(4403);
    expect(Date.now() - started).toBeLessThan(3_000);
  });
});
