import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';
import { ConfigError, loadConfig } from '../src/config.js';

describe('configuration', () => {
  it('has embedded defaults', () => {
    const config = loadConfig({});
    expect(config.port).toBe(4000);
    expect(config.dataDir).toMatch(/data$/);
    expect(config.engine.kind).toBe('local');
    expect(config.engine.kind === 'local' && config.engine.modelsDir).toBeUndefined();
    expect(config.poller.minIntervalMs).toBeLessThanOrEqual(config.poller.maxIntervalMs);
  });

  it('names every wrong variable and what is wrong with it', () => {
    let error: unknown;
    try {
      loadConfig({ PORT: 'eighty', ENGINE: 'dall-e', IMAGEPIPELINE_URL: 'ftp://x', POLL_MIN_INTERVAL_MS: '0' });
    } catch (err) {
      error = err;
    }
    expect(error).toBeInstanceOf(ConfigError);
    const problems = (error as ConfigError).problems.join('\n');
    expect(problems).toMatch(/^PORT: .*"eighty"/m);
    expect(problems).toMatch(/^ENGINE: .*"dall-e"/m);
    expect(problems).toMatch(/^IMAGEPIPELINE_URL: must be an http\(s\) URL/m);
    expect(problems).toMatch(/^POLL_MIN_INTERVAL_MS: /m);
  });

  it('refuses a poll interval range that is upside down', () => {
    expect(() => loadConfig({ POLL_MIN_INTERVAL_MS: '500', POLL_MAX_INTERVAL_MS: '100' })).toThrow(/POLL_MAX_INTERVAL_MS/);
  });

  it('stops the server at start-up with the message, before listening', async () => {
    const run = promisify(execFile);
    const result = await run('npx', ['tsx', 'src/main.ts'], {
      env: { ...process.env, PORT: '99999', DATA_DIR: '/tmp/sd-api-config-test' },
    }).then(
      () => ({ code: 0, stderr: '' }),
      (err: { code: number; stderr: string }) => err,
    );
    expect(result.code).toBe(2);
    expect(result.stderr).toMatch(/PORT: .*"99999"/);
  });
});
