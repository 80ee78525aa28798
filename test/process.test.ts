import type { ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import { JobDocument, ModelsDocument, Text2ImageDocument } from '../src/client/generated/graphql.js';
import { FakeImagePipeline } from './fixtures/fake-imagepipeline.js';
import { startServerProcess } from './helpers/server-process.js';
import { gql } from './helpers/test-server.js';

const startMain = startServerProcess;

describe('npm start (src/main.ts) as a process', () => {
  const dataDir = mkdtempSync(path.join(tmpdir(), 'sd-api-main-'));
  const upstream = new FakeImagePipeline();
  let env: Record<string, string>;
  let running: ChildProcess | null = null;

  beforeAll(async () => {
    await upstream.start();
    env = {
      PORT: '0',
      HOST: '127.0.0.1',
      DATA_DIR: dataDir,
      LOG_LEVEL: 'info',
      ENGINE: 'imagepipeline',
      IMAGEPIPELINE_URL: upstream.url,
      IMAGEPIPELINE_API_KEY: upstream.apiKey,
    };
  });
  afterAll(async () => {
    running?.kill('SIGKILL');
    await upstream.stop();
    rmSync(dataDir, { recursive: true, force: true });
  });

  it('creates and prints a key on the first start only, and shuts down gracefully on SIGTERM', async () => {
    const first = startMain(env);
    running = first.child;
    const url = await first.url;
    const lines = first.output().split('\n');
    const key = lines.find((l) => /^sdk_[A-Za-z0-9_-]{43}$/.test(l));
    expect(key).toBeDefined();

    const models = await gql(url, ModelsDocument, {}, key);
    expect(models.data!.models.map((m) => m.id)).toContain('sd1.5');

    upstream.behaviour.hold = true;
    const created = await gql(url, Text2ImageDocument, { input: { prompt: 'kept across restarts' } }, key);
    const id = created.data!.text2image.id;

    const socket = new WebSocket(`${url.replace('http', 'ws')}/graphql`, 'graphql-transport-ws');
    await new Promise((r) => socket.once('open', r));
    const closed = new Promise<number>((resolve) => socket.once('close', (code) => resolve(code)));

    first.child.kill('SIGTERM');
    expect(await first.exited).toBe(0);
    expect(await closed).toBe(1001);
    expect(first.output()).toMatch(/server stopped/);

    const second = startMain(env);
    running = second.child;
    const url2 = await second.url;
    expect(second.output()).not.toMatch(/sdk_/);
    const again = await gql(url2, ModelsDocument, {}, key);
    expect(again.errors).toBeUndefined();
    upstream.behaviour.hold = false;
    upstream.release();
    const deadline = Date.now() + 15_000;
    let status = '';
    while (Date.now() < deadline && status !== 'SUCCESS') {
      status = (await gql(url2, JobDocument, { id }, key)).data!.job!.status;
      await new Promise((r) => setTimeout(r, 50));
    }
    expect(status).toBe('SUCCESS');
    second.child.kill('SIGINT');
    expect(await second.exited).toBe(0);
    running = null;
  });
});
