import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';
import { ConfigError, loadConfig } from '../src/config.js';
import { SCHEDULER_NAMES } from '../src/generation/request.js';

/** The problems a refused configuration names. */
function problemsOf(env: Record<string, string>): string[] {
  try {
    loadConfig(env);
  } catch (err) {
    if (err instanceof ConfigError) return err.problems;
    throw err;
  }
  throw new Error(`accepted: ${JSON.stringify(env)}`);
}

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
    expect(problems).toMatch(/^IMAGEPIPELINE_URL: "ftp:\/\/x" is not an http\(s\) URL/m);
    expect(problems).toMatch(/^POLL_MIN_INTERVAL_MS: /m);
  });

  it('takes LOCAL_NOISE torch (the default) or numpy, and refuses anything else naming the variable and the choices', () => {
    const noise = (env: Record<string, string>) => {
      const engine = loadConfig(env).engine;
      return engine.kind === 'local' ? engine.noise : null;
    };
    expect(noise({})).toBe('torch');
    expect(noise({ LOCAL_NOISE: '' })).toBe('torch'); // empty means unset
    expect(noise({ LOCAL_NOISE: 'torch' })).toBe('torch');
    expect(noise({ LOCAL_NOISE: 'numpy' })).toBe('numpy');
    for (const bad of ['NUMPY', 'jax', 'torch,numpy', ' numpy']) {
      expect(problemsOf({ LOCAL_NOISE: bad }), bad).toEqual([`LOCAL_NOISE: must be one of torch, numpy (got ${JSON.stringify(bad)})`]);
    }
  });

  it('takes every scheduler the API offers as LOCAL_SCHEDULER, DPMPP_2M_KARRAS by default', () => {
    const scheduler = (env: Record<string, string>) => {
      const engine = loadConfig(env).engine;
      return engine.kind === 'local' ? engine.scheduler : null;
    };
    expect(scheduler({})).toBe('DPMPP_2M_KARRAS');
    for (const name of SCHEDULER_NAMES) expect(scheduler({ LOCAL_SCHEDULER: name })).toBe(name);
    expect(SCHEDULER_NAMES).toHaveLength(9);
    expect(problemsOf({ LOCAL_SCHEDULER: 'euler_a' })).toEqual([
      'LOCAL_SCHEDULER: must be one of DPMPP_2M_KARRAS, EULER_A, EULER, DDIM, PNDM, LMS, HEUN, DPMPP_2M, UNIPC (got "euler_a")',
    ]);
  });

  it('takes DATABASE_URL as a postgres:// URL (unset: SQLite in DATA_DIR), and never repeats a wrong one', () => {
    expect(loadConfig({}).databaseUrl).toBeUndefined();
    expect(loadConfig({ DATABASE_URL: '' }).databaseUrl).toBeUndefined();
    for (const url of ['postgres://u:p@db.internal:5432/sd', 'postgresql://localhost/sd?options=-c%20search_path%3Dsd']) {
      expect(loadConfig({ DATABASE_URL: url }).databaseUrl).toBe(url);
    }
    for (const wrong of ['mysql://u:secret@db/sd', 'postgres://', 'u:secret@db/sd']) {
      let error: unknown;
      try {
        loadConfig({ DATABASE_URL: wrong });
      } catch (err) {
        error = err;
      }
      expect(error).toBeInstanceOf(ConfigError);
      const problems = (error as ConfigError).problems.join('\n');
      expect(problems).toMatch(/^DATABASE_URL: must be a postgres:\/\/ or postgresql:\/\/ URL$/m);
      expect(problems).not.toContain('secret');
    }
  });

  it('sizes the Postgres pool with DATABASE_POOL_SIZE (10 by default), refusing 0 with the range', () => {
    expect(loadConfig({}).databasePoolSize).toBe(10);
    expect(loadConfig({ DATABASE_POOL_SIZE: '40' }).databasePoolSize).toBe(40);
    expect(() => loadConfig({ DATABASE_POOL_SIZE: '0' })).toThrow(/DATABASE_POOL_SIZE: .*1/);
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

describe('the imagepipeline engine’s upstream (IMAGEPIPELINE_URL, IMAGEPIPELINE_API_KEY)', () => {
  const upstream = (env: Record<string, string>) => {
    const engine = loadConfig({ ENGINE: 'imagepipeline', ...env }).engine;
    return engine.kind === 'imagepipeline' ? { url: engine.url, apiKey: engine.apiKey } : null;
  };

  it('takes one URL (without its trailing slash) and one key; by default the hosted service, without a key', () => {
    expect(upstream({})).toEqual({ url: 'https://api.imagepipeline.io', apiKey: undefined });
    expect(upstream({ IMAGEPIPELINE_URL: ' http://10.0.0.11:4001/ ', IMAGEPIPELINE_API_KEY: ' sdk_k ' })).toEqual({
      url: 'http://10.0.0.11:4001',
      apiKey: 'sdk_k',
    });
  });

  it('refuses a comma-separated list of URLs, naming the variable and pointing to the queue for several machines', () => {
    for (const list of ['http://a:1,http://b:2', 'http://a:1, http://a:1/', 'http://a:1,']) {
      const problems = problemsOf({ ENGINE: 'imagepipeline', IMAGEPIPELINE_URL: list });
      expect(problems, list).toHaveLength(1);
      expect(problems[0]).toMatch(/^IMAGEPIPELINE_URL: must be one URL, not a comma-separated list: /);
      expect(problems[0]).toContain('sends jobs to one upstream');
      expect(problems[0]).toContain('Several machines are served by the queue: set REDIS_URL and run `npm run worker` on each');
      expect(problems[0]).toContain('ENGINE=imagepipeline against its own upstream');
    }
    expect(() => loadConfig({ IMAGEPIPELINE_URL: 'gopher://b' })).toThrow(/IMAGEPIPELINE_URL: "gopher:\/\/b" is not an http\(s\) URL/);
  });

  it('refuses a comma-separated list of keys the same way, without repeating the keys', () => {
    const problems = problemsOf({
      ENGINE: 'imagepipeline',
      IMAGEPIPELINE_URL: 'http://a:1',
      IMAGEPIPELINE_API_KEY: 'sdk_secretA,sdk_secretB',
    });
    expect(problems).toHaveLength(1);
    expect(problems[0]).toMatch(/^IMAGEPIPELINE_API_KEY: must be one key \(the upstream's\), not a comma-separated list: .*REDIS_URL/);
    expect(problems[0]).not.toContain('secret');
  });

  it('starts with IMAGEPIPELINE_WORKER_GRACE_MS still set (it is no longer read), and says so in a notice', () => {
    expect(loadConfig({}).notices).toEqual([]);
    const config = loadConfig({ ENGINE: 'imagepipeline', IMAGEPIPELINE_WORKER_GRACE_MS: '30000' });
    expect(config.notices).toEqual([expect.stringMatching(/^IMAGEPIPELINE_WORKER_GRACE_MS is no longer read: .*POLL_FAILURE_BUDGET_MS/)]);
  });

  it('a server given a list stops at start-up with that message', async () => {
    const run = promisify(execFile);
    const result = await run('npx', ['tsx', 'src/main.ts'], {
      env: {
        ...process.env,
        ENGINE: 'imagepipeline',
        IMAGEPIPELINE_URL: 'http://10.0.0.11:4001,http://10.0.0.12:4002',
        DATA_DIR: '/tmp/sd-api-config-test',
      },
    }).then(
      () => ({ code: 0, stderr: '' }),
      (err: { code: number; stderr: string }) => err,
    );
    expect(result.code).toBe(2);
    expect(result.stderr).toMatch(/IMAGEPIPELINE_URL: must be one URL, not a comma-separated list: .*REDIS_URL .*npm run worker/);
  });
});

describe('queue configuration (REDIS_URL)', () => {
  it('is off by default: jobs run in the API process, as before', () => {
    const config = loadConfig({});
    expect(config.queue).toBeNull();
    expect(config.worker).toEqual({ concurrency: 1, metricsPort: undefined });
  });

  it('takes a redis:// URL, with the prefix, worker concurrency and queue timings', () => {
    const config = loadConfig({ REDIS_URL: 'redis://127.0.0.1:6379/2', WORKER_CONCURRENCY: '3', REDIS_PREFIX: 'prod-eu' });
    expect(config.queue).toEqual({
      redisUrl: 'redis://127.0.0.1:6379/2',
      prefix: 'prod-eu',
      attempts: 3,
      lockMs: 30_000,
      stalledIntervalMs: 30_000,
      maxStalledCount: 2,
      reconcileIntervalMs: 30_000,
    });
    expect(config.worker.concurrency).toBe(3);
    expect(loadConfig({ METRICS_PORT: '9464' }).worker.metricsPort).toBe(9464);
    expect(() => loadConfig({ METRICS_PORT: '70000' })).toThrow(/METRICS_PORT/);
  });

  it('refuses a URL that is not Redis and a prefix that could collide with keys', () => {
    expect(() => loadConfig({ REDIS_URL: 'http://127.0.0.1:6379' })).toThrow(/REDIS_URL: must be a redis:\/\/ or rediss:\/\/ URL/);
    expect(() => loadConfig({ REDIS_URL: 'redis://x', REDIS_PREFIX: 'a:b' })).toThrow(/REDIS_PREFIX/);
    expect(() => loadConfig({ WORKER_CONCURRENCY: '0' })).toThrow(/WORKER_CONCURRENCY/);
  });

  it('npm run worker refuses to start without REDIS_URL', async () => {
    const run = promisify(execFile);
    const result = await run('npx', ['tsx', 'src/worker.ts'], {
      env: { ...process.env, REDIS_URL: '', DATA_DIR: '/tmp/sd-api-config-test' },
    }).then(
      () => ({ code: 0, stderr: '' }),
      (err: { code: number; stderr: string }) => err,
    );
    expect(result.code).toBe(2);
    expect(result.stderr).toMatch(/REDIS_URL: must be set for a worker/);
  });
});
