import { execFile } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { get as httpGet, type IncomingHttpHeaders } from 'node:http';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { brotliDecompressSync, gunzipSync } from 'node:zlib';
import type { TypedDocumentNode } from '@graphql-typed-document-node/core';
import { print, type ExecutionResult } from 'graphql';
import { createClient } from 'graphql-ws';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import {
  CancelJobDocument,
  JobDocument,
  JobsDocument,
  JobStatusDocument,
  Text2ImageDocument,
  ViewerDocument,
} from '../src/client/generated/graphql.js';
import { SqliteKeyStore } from '../src/auth/key-store.js';
import { openDatabase, WalSync } from '../src/storage/sqlite.js';
import { collect, startTestServer, waitFor, type TestServer } from './helpers/test-server.js';

/*
 * Who may call what: API keys over HTTP (API-Key header or Authorization: Bearer) and over
 * WebSocket (connection_init payload), introspection and GraphiQL without a key, isolation of
 * one key's jobs from another's, and the keys CLI against a running server.
 */

const REPO_ROOT = fileURLToPath(new URL('..', import.meta.url));
const INTROSPECTION = '{ __schema { queryType { name } } }';

function rawGet(url: string, headers: Record<string, string>): Promise<{ status: number; headers: IncomingHttpHeaders; body: Buffer }> {
  return new Promise((resolve, reject) => {
    httpGet(url, { headers }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode!, headers: res.headers, body: Buffer.concat(chunks) }));
    }).on('error', reject);
  });
}

interface RawResponse {
  status: number;
  headers: Headers;
  body: ExecutionResult<Record<string, unknown>>;
}

describe('authentication and isolation', () => {
  let server: TestServer;

  beforeAll(async () => {
    server = await startTestServer();
  });
  afterAll(() => server.stop());

  /** POSTs a document with exactly these headers and returns status, headers and body. */
  async function post<R, V>(doc: TypedDocumentNode<R, V> | string, headers: Record<string, string>, variables?: V): Promise<RawResponse> {
    const res = await fetch(`${server.url}/graphql`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', accept: 'application/json', ...headers },
      body: JSON.stringify({ query: typeof doc === 'string' ? doc : print(doc), variables }),
    });
    return { status: res.status, headers: res.headers, body: (await res.json()) as RawResponse['body'] };
  }

  const jobIds = async (key: string) => {
    const page = await server.gql(JobsDocument, { first: 100 }, key);
    expect(page.errors).toBeUndefined();
    return page.data!.jobs.edges.map((e) => e.node.id);
  };

  const createJob = async (key: string, prompt = 'a lighthouse at dusk', numInferenceSteps = 5) => {
    const created = await server.gql(Text2ImageDocument, { input: { prompt, numInferenceSteps } }, key);
    expect(created.errors).toBeUndefined();
    return created.data!.text2image;
  };

  /** An error with the job id written as <id>, so two refusals can be compared for shape. */
  const shapeOf = (errors: readonly unknown[] | undefined, id: string) =>
    (errors ?? []).map((e) => {
      const err = e as { message: string; extensions?: Record<string, unknown>; path?: readonly (string | number)[] };
      return { message: err.message.replaceAll(id, '<id>'), code: err.extensions?.code, path: err.path };
    });

  describe('over HTTP', () => {
    it('refuses a request without a key with 401 UNAUTHENTICATED', async () => {
      const res = await post(JobsDocument, {}, { first: 5 });
      expect(res.status).toBe(401);
      expect(res.headers.get('www-authenticate')).toBe('API-Key');
      expect(res.body.data ?? null).toBeNull();
      expect(res.body.errors).toHaveLength(1);
      expect(res.body.errors![0]!.extensions?.code).toBe('UNAUTHENTICATED');
      expect(res.body.errors![0]!.message).toMatch(/API key/i);
    });

    it('refuses a mutation without a key and creates no job', async () => {
      const before = await jobIds(server.key);
      const res = await post(Text2ImageDocument, {}, { input: { prompt: 'not allowed' } });
      expect(res.status).toBe(401);
      expect(res.body.errors![0]!.extensions?.code).toBe('UNAUTHENTICATED');
      expect(await jobIds(server.key)).toEqual(before);
    });

    it('refuses a wrong key with 401 UNAUTHENTICATED', async () => {
      const res = await post(JobsDocument, { 'API-Key': 'sdk_not-a-real-key' }, { first: 5 });
      expect(res.status).toBe(401);
      expect(res.body.data ?? null).toBeNull();
      expect(res.body.errors![0]!.extensions?.code).toBe('UNAUTHENTICATED');
      expect(res.body.errors![0]!.message).toMatch(/not valid/);
    });

    it('accepts the key in the API-Key header', async () => {
      const res = await post(JobsDocument, { 'API-Key': server.key }, { first: 5 });
      expect(res.status).toBe(200);
      expect(res.body.errors).toBeUndefined();
      expect(res.body.data).toHaveProperty('jobs');
    });

    it('accepts the key as Authorization: Bearer, and refuses a wrong bearer', async () => {
      const ok = await post(JobsDocument, { Authorization: `Bearer ${server.key}` }, { first: 5 });
      expect(ok.status).toBe(200);
      expect(ok.body.errors).toBeUndefined();
      expect(ok.body.data).toHaveProperty('jobs');
      const created = await post(
        Text2ImageDocument,
        { authorization: `bearer ${server.key}` },
        { input: { prompt: 'via bearer', numInferenceSteps: 5 } },
      );
      expect(created.body.errors).toBeUndefined();
      expect(await jobIds(server.key)).toContain((created.body.data as { text2image: { id: string } }).text2image.id);

      const wrong = await post(JobsDocument, { Authorization: 'Bearer sdk_wrong' }, { first: 5 });
      expect(wrong.status).toBe(401);
      expect(wrong.body.errors![0]!.extensions?.code).toBe('UNAUTHENTICATED');
    });

    it('answers introspection without a key', async () => {
      const res = await post(INTROSPECTION, {});
      expect(res.status).toBe(200);
      expect(res.body.errors).toBeUndefined();
      expect(res.body.data).toEqual({ __schema: { queryType: { name: 'Query' } } });
    });

    it.each([
      ['a placeholder', { 'API-Key': 'paste your key here' }],
      ['a wrong key', { 'API-Key': 'sdk_wrong' }],
      ['an empty key', { 'API-Key': '' }],
    ])('answers introspection whatever key is sent: %s (the schema is public; GraphiQL opens with one)', async (_name, headers) => {
      const res = await post(INTROSPECTION, headers);
      expect(res.status).toBe(200);
      expect(res.body.data).toEqual({ __schema: { queryType: { name: 'Query' } } });
    });

    it('does not let a query hide real fields behind introspection, with or without a wrong key', async () => {
      const mixed = await post('{ __schema { queryType { name } } jobs { edges { cursor } } }', {});
      expect(mixed.status).toBe(401);
      expect(mixed.body.errors![0]!.extensions?.code).toBe('UNAUTHENTICATED');
      const wrongKey = await post('{ __typename jobs { edges { cursor } } }', { 'API-Key': 'sdk_wrong' });
      expect(wrongKey.status).toBe(401);
      expect(wrongKey.body.errors![0]!.message).toBe('the API key is not valid');
    });

    it('serves the GraphiQL page on GET /graphql for a browser, compressed and revalidated by ETag', async () => {
      const plain = await fetch(`${server.url}/graphql`, { headers: { accept: 'text/html', 'accept-encoding': 'identity' } });
      expect(plain.status).toBe(200);
      expect(plain.headers.get('content-type')).toMatch(/^text\/html/);
      expect(plain.headers.get('content-encoding')).toBeNull();
      const html = await plain.text();
      expect(html).toMatch(/<html/i);
      expect(html).toMatch(/renderYogaGraphiQL/);
      expect(html.length).toBeGreaterThan(1_000_000);

      for (const encoding of ['br', 'gzip']) {
        // undici decodes what it asked for; node:http shows the bytes on the wire.
        const wire = await rawGet(`${server.url}/graphql`, { accept: 'text/html', 'accept-encoding': encoding });
        expect(wire.status).toBe(200);
        expect(wire.headers['content-encoding']).toBe(encoding);
        expect(wire.headers['cache-control']).toBe('no-cache');
        expect(wire.headers.vary).toBe('Accept-Encoding');
        expect(wire.body.length).toBeLessThan(html.length / 3);
        const decoded = encoding === 'br' ? brotliDecompressSync(wire.body) : gunzipSync(wire.body);
        expect(decoded.toString()).toBe(html);
        const again = await rawGet(`${server.url}/graphql`, {
          accept: 'text/html',
          'accept-encoding': encoding,
          'if-none-match': String(wire.headers.etag),
        });
        expect(again.status).toBe(304);
        expect(again.body.length).toBe(0);
      }
    });
  });

  describe('over WebSocket', () => {
    it.each([
      ['apiKey', (key: string) => ({ apiKey: key })],
      ['API-Key', (key: string) => ({ 'API-Key': key })],
    ])('accepts the key as %s in connection_init and streams the own job to SUCCESS', async (_name, params) => {
      const job = await createJob(server.key);
      const { values, errors } = await collect(server.ws(params(server.key)), JobStatusDocument, { id: job.id });
      expect(errors).toEqual([]);
      expect(values.length).toBeGreaterThan(0);
      expect(values.every((v) => v.jobStatus.id === job.id)).toBe(true);
      expect(values.at(-1)!.jobStatus.status).toBe('SUCCESS');
    });

    it('refuses a subscription without a key with UNAUTHENTICATED', async () => {
      const job = await createJob(server.key);
      const { values, errors } = await collect(server.ws({}), JobStatusDocument, { id: job.id });
      expect(values).toEqual([]);
      expect(errors).toHaveLength(1);
      expect((errors[0] as { extensions?: { code?: string } }).extensions?.code).toBe('UNAUTHENTICATED');
    });

    it('closes the socket with 4403 for a wrong key', async () => {
      const job = await createJob(server.key);
      let closedCode: number | undefined;
      const client = createClient({
        url: `${server.url.replace('http', 'ws')}/graphql`,
        webSocketImpl: WebSocket,
        connectionParams: { apiKey: 'sdk_not-a-real-key' },
        retryAttempts: 0,
        lazy: true,
        on: { closed: (event) => void (closedCode = (event as { code: number }).code) },
      });
      try {
        const sinkError = await new Promise<unknown>((resolve) => {
          client.subscribe(
            { query: print(JobStatusDocument), variables: { id: job.id } },
            {
              next: () => resolve(new Error('got a value with a wrong key')),
              error: resolve,
              complete: () => resolve(new Error('completed with a wrong key')),
            },
          );
        });
        expect((sinkError as { code?: number }).code).toBe(4403);
        await waitFor(() => closedCode !== undefined);
        expect(closedCode).toBe(4403);
      } finally {
        await client.dispose();
      }
    });
  });

  describe('isolation between keys', () => {
    it("hides A's job from B exactly as a job that does not exist, and leaves it untouched", async () => {
      const other = await server.newKey('other');
      server.upstream.behaviour.hold = true;
      try {
        const aJob = await createJob(server.key, "A's held job", 20);
        // Wait until the engine has it, so the job is live (not merely queued) when B tries.
        await waitFor(() => [...server.upstream.jobs.values()].some((j) => j.body.prompt === "A's held job" && j.statusCalls > 0));
        const before = (await server.gql(JobDocument, { id: aJob.id })).data!.job!;
        expect(['PENDING', 'PROCESSING']).toContain(before.status);
        const randomId = randomUUID();

        // job(id): null, exactly like a random id.
        const bRead = await server.gql(JobDocument, { id: aJob.id }, other);
        const bReadRandom = await server.gql(JobDocument, { id: randomId }, other);
        expect(bRead).toEqual({ data: { job: null } });
        expect(bRead).toEqual(bReadRandom);

        // cancelJob: the same NOT_FOUND as a random id.
        const bCancel = await server.gql(CancelJobDocument, { id: aJob.id }, other);
        const bCancelRandom = await server.gql(CancelJobDocument, { id: randomId }, other);
        expect(bCancel.data ?? null).toBeNull();
        expect(bCancel.errors).toHaveLength(1);
        expect(bCancel.errors![0]!.extensions?.code).toBe('NOT_FOUND');
        expect(bCancel.errors![0]!.message).toContain(aJob.id);
        expect(shapeOf(bCancel.errors, aJob.id)).toEqual(shapeOf(bCancelRandom.errors, randomId));
        expect(bCancelRandom.data ?? null).toBeNull();

        // jobStatus: the same error as a random id, and no values.
        const bWatch = await collect(server.ws({ apiKey: other }), JobStatusDocument, { id: aJob.id });
        const bWatchRandom = await collect(server.ws({ apiKey: other }), JobStatusDocument, { id: randomId });
        expect(bWatch.values).toEqual([]);
        expect(bWatchRandom.values).toEqual([]);
        expect(bWatch.errors).toHaveLength(1);
        expect((bWatch.errors[0] as { extensions?: { code?: string } }).extensions?.code).toBe('NOT_FOUND');
        expect(shapeOf(bWatch.errors, aJob.id)).toEqual(shapeOf(bWatchRandom.errors, randomId));

        // jobs: each key lists its own jobs only.
        const bJob = await createJob(other, "B's job");
        const bList = await jobIds(other);
        expect(bList).toContain(bJob.id);
        expect(bList).not.toContain(aJob.id);
        const aList = await jobIds(server.key);
        expect(aList).toContain(aJob.id);
        expect(aList).not.toContain(bJob.id);
        expect((await server.gql(JobDocument, { id: bJob.id })).data!.job).toBeNull();

        // A's job is untouched, and A itself may still cancel it.
        const after = (await server.gql(JobDocument, { id: aJob.id })).data!.job!;
        expect(after.status).toBe(before.status);
        expect(after.finishedAt).toBeNull();
        const aCancel = await server.gql(CancelJobDocument, { id: aJob.id });
        expect(aCancel.errors).toBeUndefined();
        expect(aCancel.data!.cancelJob.status).toBe('CANCELED');
      } finally {
        server.upstream.behaviour.hold = false;
        server.upstream.release();
      }
    });
  });

  describe('keys CLI', () => {
    it('creates a key in the running server’s DATA_DIR that works at once', async () => {
      const { stdout } = await promisify(execFile)('npx', ['tsx', 'scripts/keys.ts', 'create', '--name', 'cli-test'], {
        cwd: REPO_ROOT,
        env: { ...process.env, DATA_DIR: server.dataDir },
        timeout: 60_000,
      });
      const lines = stdout.trim().split('\n');
      expect(lines[0]).toContain('"cli-test"');
      const key = lines.at(-1)!.trim();
      expect(key).toMatch(/^sdk_\S+$/);
      expect(key).not.toBe(server.key);

      const listed = await post(JobsDocument, { 'API-Key': key }, { first: 5 });
      expect(listed.status).toBe(200);
      expect(listed.body.errors).toBeUndefined();
      const job = await createJob(key, 'made with a CLI key');
      expect(await jobIds(key)).toEqual([job.id]);
      expect(await jobIds(server.key)).not.toContain(job.id);
      const { values, errors } = await collect(server.ws({ apiKey: key }), JobStatusDocument, { id: job.id });
      expect(errors).toEqual([]);
      expect(values.at(-1)!.jobStatus.status).toBe('SUCCESS');
    });

    const keysCli = async (...args: string[]) =>
      (
        await promisify(execFile)('npx', ['tsx', 'scripts/keys.ts', ...args], {
          cwd: REPO_ROOT,
          env: { ...process.env, DATA_DIR: server.dataDir },
          timeout: 60_000,
        })
      ).stdout.trim();

    it('gives keys scopes (read-only < generate < admin), changes them, lists and revokes, each counting at once', async () => {
      const created = (await keysCli('create', '--name', 'reader', '--scopes', 'read-only')).split('\n');
      const key = created.at(-1)!;
      const id = /created key (\S+)/.exec(created[0]!)![1]!;
      expect(created[0]).toContain('scopes: read');

      // read-only: may look, may not create (GraphQL FORBIDDEN, REST 403), may not upload.
      expect((await post(ViewerDocument, { 'API-Key': key }, {})).body.data).toEqual({ viewer: { id, name: 'reader', scopes: ['READ'] } });
      expect((await post(JobsDocument, { 'API-Key': key }, { first: 5 })).body.errors).toBeUndefined();
      const refused = await post(Text2ImageDocument, { 'API-Key': key }, { input: { prompt: 'not allowed' } });
      expect(refused.body.errors![0]!.extensions!.code).toBe('FORBIDDEN');
      expect(refused.body.errors![0]!.message).toMatch(/lacks the "generate" scope/);
      const rest = await fetch(`${server.url}/sd/text2image/v1`, { method: 'POST', headers: { 'api-key': key }, body: '{"prompt":"x"}' });
      expect(rest.status).toBe(403);
      expect(await rest.json()).toMatchObject({ status: 'FAILURE', code: 'FORBIDDEN' });
      const status = await fetch(`${server.url}/sd/text2image/v1/status/nope`, { headers: { 'api-key': key } });
      expect(status.status).toBe(404);

      // generate: may create and cancel, still may not change the catalogue.
      expect(await keysCli('scopes', id, '--scopes', 'generate')).toContain('now has scopes: generate');
      expect((await post(ViewerDocument, { 'API-Key': key }, {})).body.data).toEqual({
        viewer: { id, name: 'reader', scopes: ['GENERATE'] },
      });
      expect((await post(Text2ImageDocument, { 'API-Key': key }, { input: { prompt: 'allowed now' } })).body.errors).toBeUndefined();
      const form = new FormData();
      form.set(
        'operations',
        JSON.stringify({
          query: 'mutation ($f: File!) { uploadEmbedding(file: $f, name: "n", triggerWord: "tw") { id } }',
          variables: { f: null },
        }),
      );
      form.set('map', JSON.stringify({ 0: ['variables.f'] }));
      form.set('0', new Blob([Buffer.alloc(16)]), 'x.safetensors');
      const upload = (await (await fetch(`${server.url}/graphql`, { method: 'POST', headers: { 'api-key': key }, body: form })).json()) as {
        errors: { extensions: { code: string } }[];
      };
      expect(upload.errors[0]!.extensions.code).toBe('FORBIDDEN');

      expect(await keysCli('list')).toMatch(new RegExp(`${id} .*reader.*\\[generate\\].*active`));
      await expect(keysCli('create', '--name', 'x', '--scopes', 'superuser')).rejects.toThrow(/unknown scope\(s\): superuser/);

      expect(await keysCli('revoke', id)).toContain('revoked');
      expect((await post(JobsDocument, { 'API-Key': key }, { first: 5 })).status).toBe(401);
    });

    it('finds the key an operator names by id, whole key or any prefix of either, and refuses an ambiguous one', async () => {
      const keys = server.app.keys;
      const a = await keys.create('find-a');
      const b = await keys.create('find-b');
      const found = async (ref: string) => {
        const r = await keys.find(ref);
        return 'record' in r ? r.record.id : r.problem;
      };
      expect(await found(a.key)).toBe(a.record.id);
      expect(await found(a.key.slice(0, 20))).toBe(a.record.id); // longer than the shown prefix
      expect(await found(a.record.prefix)).toBe(a.record.id);
      expect(await found(` ${a.record.id} `)).toBe(a.record.id);
      expect(await found(b.record.id.slice(0, 13))).toBe(b.record.id);
      expect(await found(a.record.prefix.slice(0, 8))).toBe(a.record.id);
      expect(await found(a.record.id.slice(0, 4))).toBe(a.record.id);
      // "sdk_" starts every key: too short to name one, however few are left.
      expect(await found('sdk_')).toMatch(/^"sdk_" is too short to name a key: give at least 4 characters/);
      expect(await found('sdk_ab')).toMatch(/too short/);
      expect(await found('abc')).toMatch(/too short/);
      expect(await found(`${a.key.slice(0, -1)}${a.key.endsWith('A') ? 'B' : 'A'}`)).toMatch(/^no key has the id, key or prefix/);
      expect(await found('')).toMatch(/give a key id/);
      expect(await keys.revoke(b.record.id)).toBe(true);
      expect(await found(b.key)).toBe(`the key "${b.key}" names (${b.record.id}) is already revoked`);
    });

    it('revokes with the whole key from the command line, and says why an ambiguous prefix is refused', async () => {
      const created = (await keysCli('create', '--name', 'whole')).split('\n');
      const key = created.at(-1)!;
      expect(await keysCli('revoke', key)).toMatch(/^revoked \S+ \(sdk_\S+…, "whole"\)$/);
      expect((await post(JobsDocument, { 'API-Key': key }, { first: 5 })).status).toBe(401);
      await expect(keysCli('revoke', 'sdk_')).rejects.toThrow(/"sdk_" is too short to name a key/);
    });
  });
});

describe('key references', () => {
  it('refuses a prefix two live keys share, naming both', async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'sd-keys-'));
    const db = openDatabase(path.join(dir, 'keys.sqlite'));
    try {
      const keys = new SqliteKeyStore(db, new WalSync(path.join(dir, 'keys.sqlite'), false));
      const insert = db.prepare('INSERT INTO api_keys (id, name, key_hash, key_prefix, scopes, created_at) VALUES (?, ?, ?, ?, ?, ?)');
      insert.run('id-one', 'one', 'hash-one', 'sdk_abcd12', '["generate"]', 1);
      insert.run('id-two', 'two', 'hash-two', 'sdk_abcd34', '["generate"]', 2);
      expect(await keys.find('sdk_abcd')).toEqual({
        problem: '"sdk_abcd" names 2 keys: id-one (sdk_abcd12…, "one"), id-two (sdk_abcd34…, "two"); give more of it, or the id',
      });
      expect(await keys.find('sdk_abcd3')).toMatchObject({ record: { id: 'id-two' } });
      expect(await keys.revoke('id-two')).toBe(true);
      expect(await keys.find('sdk_abcd')).toMatchObject({ record: { id: 'id-one' } });
    } finally {
      db.close();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
