import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { JobDocument, JobsDocument, Text2ImageDocument } from '../src/client/generated/graphql.js';
import { startTestServer, waitFor, type TestServer, LOCAL_ENGINE } from './helpers/test-server.js';

/**
 * The sd15 command end to end: `node bin/sd15.js …` as a child process, as a user runs it,
 * against real servers on loopback. Images come from the local engine on the tiny generated
 * models (real PNGs); failures and jobs that must stay queued come from the fake upstream
 * (test fixture) behind the imagepipeline engine.
 */
const BIN = fileURLToPath(new URL('../bin/sd15.js', import.meta.url));
const HAS_SCRIPT = spawnSync('script', ['--version'], { stdio: 'ignore' }).status === 0;

interface Finished {
  code: number | null;
  stdout: string;
  stderr: string;
}

interface Running {
  child: ReturnType<typeof spawn>;
  stdout(): string;
  stderr(): string;
  done: Promise<Finished>;
}

const envFor = (server: TestServer, key = server.key) => ({ ...process.env, SD15_URL: server.url, SD15_API_KEY: key });

function start(command: string, args: string[], env: NodeJS.ProcessEnv): Running {
  const child = spawn(command, args, { env, stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  const done = new Promise<Finished>((resolve) => child.on('close', (code) => resolve({ code, stdout, stderr })));
  return { child, stdout: () => stdout, stderr: () => stderr, done };
}

const sd15 = (args: string[], env: NodeJS.ProcessEnv) => start(process.execPath, [BIN, ...args], env).done;

const tempDirs: string[] = [];
const tempDir = () => {
  const dir = mkdtempSync(path.join(tmpdir(), 'sd15-cli-'));
  tempDirs.push(dir);
  return dir;
};

/** A PNG file of the given size: a gradient, or white inside a centred square (a mask). */
async function pngFile(dir: string, name: string, width: number, height: number, kind: 'gradient' | 'mask'): Promise<string> {
  const raw = Buffer.alloc(width * height * 3);
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      const inside = x >= width / 4 && x < (3 * width) / 4 && y >= height / 4 && y < (3 * height) / 4;
      const rgb = kind === 'mask' ? (inside ? [255, 255, 255] : [0, 0, 0]) : [(x * 4) % 256, (y * 4) % 256, 128];
      raw.set(rgb, (y * width + x) * 3);
    }
  }
  const file = path.join(dir, name);
  await sharp(raw, { raw: { width, height, channels: 3 } })
    .png()
    .toFile(file);
  return file;
}

/** The job id from the "job ID (mode, seed N)" line generate and watch open with. */
const jobIdOf = (stdout: string) => /^job (\S+) \(/m.exec(stdout)?.[1];

const savedPaths = (stdout: string) => stdout.split('\n').filter((line) => line.startsWith('/'));

afterAll(() => tempDirs.forEach((dir) => rmSync(dir, { recursive: true, force: true })));

// Each run starts a Node process that compiles the CLI with tsx: seconds apiece on a loaded machine.
describe('sd15 against the local engine (tiny models, real PNGs)', { timeout: 90_000 }, () => {
  let server: TestServer;

  beforeAll(async () => {
    server = await startTestServer({
      env: { ...LOCAL_ENGINE, RATE_LIMIT_JOBS_BURST: '1000' },
    });
  }, 60_000);
  afterAll(() => server.stop());

  it('generate text2image: plain progress lines, every image saved under --out (created), each path printed', async () => {
    const out = path.join(tempDir(), 'nested', 'out');
    // Enough steps that the poller sees the job mid-run.
    const args = ['generate', 'a lighthouse at dusk', '--negative', 'blurry', '--steps', '100', '--width', '128', '--height', '96'];
    const choices = [
      '--model',
      'tiny',
      '--embedding',
      'tiny-single',
      '--embedding',
      'tiny-multi',
      '--scheduler',
      'euler_a',
      '--guidance',
      '9',
    ];
    const run = await sd15([...args, ...choices, '--samples', '2', '--seed', '5', '--out', out], envFor(server));
    expect(run.stderr).toBe('');
    expect(run.code).toBe(0);

    const id = jobIdOf(run.stdout)!;
    expect(run.stdout.split('\n')[0]).toBe(`job ${id} (text2image, seed 5)`);
    const lines = run.stdout.trim().split('\n');
    const steps = lines.flatMap((line) => {
      const match = /^processing (\d+)\/(\d+)$/.exec(line);
      return match ? [{ step: Number(match[1]), total: Number(match[2]) }] : [];
    });
    expect(steps.length).toBeGreaterThanOrEqual(1);
    expect(steps.every((s) => s.total === 100)).toBe(true);
    for (let i = 1; i < steps.length; i++) expect(steps[i]!.step).toBeGreaterThan(steps[i - 1]!.step);
    // The final status line comes after the progress lines and before the saved paths.
    const successAt = lines.indexOf('SUCCESS');
    expect(successAt).toBeGreaterThan(lines.findLastIndex((line) => line.startsWith('processing ')));

    const files = [path.join(out, `${id}-1.png`), path.join(out, `${id}-2.png`)];
    expect(lines.slice(successAt + 1)).toEqual(files);
    expect(readdirSync(out).sort()).toEqual(files.map((f) => path.basename(f)).sort());

    const { data } = await server.gql(JobDocument, { id });
    const job = data!.job!;
    expect(job.status).toBe('SUCCESS');
    expect(job.parameters).toMatchObject({
      modelId: 'tiny',
      prompt: 'a lighthouse at dusk',
      negativePrompt: 'blurry',
      numInferenceSteps: 100,
      guidanceScale: 9,
      samples: 2,
      seed: 5,
      embeddings: ['tiny-single', 'tiny-multi'],
      scheduler: 'EULER_A',
    });
    for (const [i, file] of files.entries()) {
      const bytes = readFileSync(file);
      const meta = await sharp(bytes).metadata();
      expect([meta.format, meta.width, meta.height]).toEqual(['png', 128, 96]);
      // <jobId>-<n> is the job's n-th image, byte for byte.
      expect(bytes.equals(Buffer.from(await (await fetch(job.downloadUrls[i]!)).arrayBuffer()))).toBe(true);
    }
  });

  it('generate image2image with --init a local PNG file: sent inline, image saved', async () => {
    const dir = tempDir();
    const init = await pngFile(dir, 'init.png', 64, 64, 'gradient');
    const out = path.join(dir, 'out');
    const run = await sd15(
      [
        'generate',
        'a watercolor',
        '--mode',
        'image2image',
        '--init',
        init,
        '--strength',
        '0.6',
        '--steps',
        '8',
        '--width',
        '64',
        '--height',
        '64',
        '--out',
        out,
      ],
      envFor(server),
    );
    expect(run.stderr).toBe('');
    expect(run.code).toBe(0);
    const id = jobIdOf(run.stdout)!;
    expect(savedPaths(run.stdout)).toEqual([path.join(out, `${id}-1.png`)]);
    const meta = await sharp(path.join(out, `${id}-1.png`)).metadata();
    expect([meta.format, meta.width, meta.height]).toEqual(['png', 64, 64]);

    const job = (await server.gql(JobDocument, { id })).data!.job!;
    expect(job.mode).toBe('IMAGE2IMAGE');
    expect(job.parameters.strength).toBeCloseTo(0.6);
    // The file's own bytes travelled, as a data: URL (the schema takes image URLs as strings).
    const initImage = job.parameters.initImage!;
    expect(initImage.startsWith('data:image/png;base64,')).toBe(true);
    expect(Buffer.from(initImage.split(',')[1]!, 'base64').equals(readFileSync(init))).toBe(true);
  });

  it('generate inpainting with --init and --mask files (the mode follows from --mask), image saved', async () => {
    const dir = tempDir();
    const init = await pngFile(dir, 'init.png', 64, 64, 'gradient');
    const mask = await pngFile(dir, 'mask.png', 64, 64, 'mask');
    const run = await sd15(
      [
        'generate',
        'a red door',
        '--init',
        init,
        '--mask',
        mask,
        '--steps',
        '8',
        '--width',
        '64',
        '--height',
        '64',
        '--mask-blur',
        '7',
        '--keep-unmasked',
        'no',
        '--out',
        dir,
      ],
      envFor(server),
    );
    expect(run.stderr).toBe('');
    expect(run.code).toBe(0);
    const id = jobIdOf(run.stdout)!;
    expect(run.stdout.split('\n')[0]).toMatch(/^job \S+ \(inpainting, seed \d+\)$/);
    expect(savedPaths(run.stdout)).toEqual([path.join(dir, `${id}-1.png`)]);
    const meta = await sharp(path.join(dir, `${id}-1.png`)).metadata();
    expect([meta.width, meta.height]).toEqual([64, 64]);
    const job = (await server.gql(JobDocument, { id })).data!.job!;
    expect(job.mode).toBe('INPAINTING');
    expect(Buffer.from(job.parameters.maskImage!.split(',')[1]!, 'base64').equals(readFileSync(mask))).toBe(true);
    expect([job.parameters.maskBlur, job.parameters.keepUnmasked]).toEqual([7, false]);
  });

  it("exits 2 printing the server's field errors (field, option, reason), and creates no job", async () => {
    const key = await server.newKey('cli-refused');
    const run = await sd15(['generate', 'a cat', '--steps', '500', '--width', '65'], envFor(server, key));
    expect(run.code).toBe(2);
    expect(run.stdout).toBe('');
    expect(run.stderr).toContain('BAD_USER_INPUT');
    expect(run.stderr).toMatch(/^ {2}numInferenceSteps \(--steps\): must be between 1 and 100$/m);
    expect(run.stderr).toMatch(/^ {2}width \(--width\): must be a multiple of 8 between 64 and 1024$/m);
    expect((await server.gql(JobsDocument, {}, key)).data!.jobs.edges).toEqual([]);
  });

  it('exits 2 on bad usage, saying what is wrong, and creates no job', async () => {
    const key = await server.newKey('cli-usage');
    const env = envFor(server, key);
    const cases: [string[], RegExp][] = [
      [['generate', 'a cat', '--bogus'], /Unknown option '--bogus'/],
      [['generate'], /generate needs a prompt/],
      [['generate', 'a cat', '--steps', 'many'], /--steps must be a whole number, not "many"/],
      [['generate', 'a cat', '--mode', 'image2image'], /image2image needs an init image: --init/],
      [['generate', 'a cat', '--mode', 'sketch'], /--mode must be one of text2image, image2image, inpainting/],
      [['generate', 'a cat', '--mask-blur', '3'], /--mask-blur is for inpainting, not text2image/],
      [['generate', 'a cat', '--init', BIN, '--mask', BIN, '--keep-unmasked', 'maybe'], /--keep-unmasked must be yes or no, not "maybe"/],
      [['generate', 'a cat', '--init', path.join(tempDir(), 'missing.png')], /--init: cannot read .*missing\.png \(ENOENT\)/],
      [['generate', 'a cat', '--init', BIN], /is not a PNG, JPEG or WebP image/],
      [['jobs', '--steps', '3'], /--steps is not an option of jobs/],
      [['paint', 'a cat'], /unknown command "paint"/],
    ];
    for (const [args, message] of cases) {
      const run = await sd15(args, env);
      expect({ args, code: run.code }).toEqual({ args, code: 2 });
      expect(run.stderr).toMatch(message);
      expect(run.stdout).toBe('');
    }
    const bare = await sd15([], env);
    expect(bare.code).toBe(2);
    expect(bare.stderr).toContain('Usage:');
    expect((await server.gql(JobsDocument, {}, key)).data!.jobs.edges).toEqual([]);
  });

  it('--help and help print the usage on stdout with the exit codes, exit 0', async () => {
    for (const args of [['--help'], ['help'], ['generate', '--help']]) {
      const run = await sd15(args, envFor(server));
      expect(run.code).toBe(0);
      expect(run.stderr).toBe('');
      for (const text of [
        'sd15 generate "PROMPT"',
        'sd15 watch ID',
        'sd15 jobs',
        'sd15 models',
        'sd15 cancel ID',
        '--init FILE|URL',
        'SD15_API_KEY',
      ]) {
        expect(run.stdout).toContain(text);
      }
      expect(run.stdout).toMatch(/Exit codes:\n\s+0\s+success\n\s+1\s+the job failed or was canceled/);
    }
  });

  it('models lists the catalogue: id, kind, name, trigger words (and --json the same entries)', async () => {
    const run = await sd15(['models'], envFor(server));
    expect(run.code).toBe(0);
    const rows = run.stdout.trim().split('\n');
    expect(rows[0]).toMatch(/^ID\s+KIND\s+NAME\s+TRIGGER WORDS\s+ALIASES$/);
    expect(rows.find((r) => r.startsWith('tiny '))).toMatch(/^tiny\s+checkpoint\s+Tiny test model.*\s+-\s+.*sd1\.5/);
    expect(rows.find((r) => r.startsWith('tiny-inpainting '))).toMatch(/checkpoint \(inpainting\)/);
    expect(rows.find((r) => r.startsWith('tiny-multi '))).toMatch(/^tiny-multi\s+embedding\s+tiny-multi\s+tiny-multi\s+-$/);

    const json = await sd15(['models', '--json'], envFor(server));
    expect(json.code).toBe(0);
    const models = JSON.parse(json.stdout) as { id: string; kind: string; triggerWords: string[] }[];
    expect(models.find((m) => m.id === 'tiny-multi')).toMatchObject({ kind: 'EMBEDDING', triggerWords: ['tiny-multi'] });
    expect(rows.length - 1).toBe(models.length);
  });

  it('watch ID follows an existing job to its end and saves its images; an unknown or foreign job exits 2', async () => {
    const created = await server.gql(Text2ImageDocument, {
      input: { prompt: 'a quiet harbour', numInferenceSteps: 30, width: 64, height: 64, safetyChecker: false },
    });
    const id = created.data!.text2image.id;
    const out = tempDir();
    const run = await sd15(['watch', id, '--out', out], envFor(server));
    expect(run.stderr).toBe('');
    expect(run.code).toBe(0);
    expect(run.stdout.split('\n')[0]).toMatch(new RegExp(`^job ${id} \\(text2image, seed \\d+\\)$`));
    expect(run.stdout).toMatch(/^SUCCESS$/m);
    expect(savedPaths(run.stdout)).toEqual([path.join(out, `${id}-1.png`)]);
    expect((await sharp(path.join(out, `${id}-1.png`)).metadata()).width).toBe(64);

    const unknown = await sd15(['watch', 'no-such-job'], envFor(server));
    expect(unknown.code).toBe(2);
    expect(unknown.stderr).toContain('no job no-such-job for this API key');
    const foreign = await sd15(['watch', id], envFor(server, await server.newKey('cli-other')));
    expect(foreign.code).toBe(2);
    expect(foreign.stderr).toContain(`no job ${id}`);
  });

  it.skipIf(!HAS_SCRIPT)('on a terminal (script from util-linux; skipped where it is missing) shows a bar with steps and ETA', async () => {
    const out = tempDir();
    const quote = (s: string) => `'${s.replaceAll("'", `'\\''`)}'`;
    const command = [
      process.execPath,
      BIN,
      'generate',
      'a lighthouse',
      '--steps',
      '100',
      '--width',
      '128',
      '--height',
      '128',
      '--out',
      out,
    ];
    // script runs the command on a pseudo-terminal, so its stdout is a TTY; -e passes its exit code on.
    const run = await start('script', ['-qfec', command.map(quote).join(' '), '/dev/null'], envFor(server)).done;
    expect(run.code).toBe(0);
    const screen = run.stdout;
    expect(screen).toMatch(/generating \S+ \d+\/100 steps \| \d+% \| ETA \S+/);
    expect(screen).toContain('100/100 steps | 100%');
    expect(screen).toMatch(/SUCCESS after \d/);
    // The bar, not the lines meant for logs.
    expect(screen).not.toMatch(/^processing \d+\/\d+/m);
    const id = jobIdOf(screen)!;
    expect(screen).toContain(path.join(out, `${id}-1.png`));
    expect(existsSync(path.join(out, `${id}-1.png`))).toBe(true);
  });

  it('a refused key exits 2; a server that does not answer exits 1 naming its URL', async () => {
    const refused = await sd15(['models'], envFor(server, `sdk_${'x'.repeat(43)}`));
    expect(refused.code).toBe(2);
    expect(refused.stderr).toContain(`the server at ${server.url} refused the API key`);

    // A port that was free a moment ago: nothing listens there.
    const port = await new Promise<number>((resolve) => {
      const probe = createServer().listen(0, '127.0.0.1', () => {
        const { port } = probe.address() as { port: number };
        probe.close(() => resolve(port));
      });
    });
    const url = `http://127.0.0.1:${port}`;
    const down = await sd15(['generate', 'a cat', '--url', url], envFor(server));
    expect(down.code).toBe(1);
    expect(down.stderr).toContain(`cannot reach the server at ${url} (ECONNREFUSED)`);
  });
});

describe('sd15 against the fake upstream (failures, held jobs)', { timeout: 90_000 }, () => {
  let server: TestServer;

  beforeAll(async () => {
    server = await startTestServer();
  });
  afterAll(() => server.stop());

  it('a job that fails exits 1 with its error code and message', async () => {
    server.upstream.behaviour.failWith = 'CUDA out of memory on the upstream';
    try {
      const run = await sd15(['generate', 'a doomed job', '--out', tempDir()], envFor(server));
      expect(run.code).toBe(1);
      expect(run.stdout.trim().split('\n').at(-1)).toBe('FAILURE');
      expect(run.stderr).toBe(`error: job ${jobIdOf(run.stdout)} failed: ENGINE_FAILED: CUDA out of memory on the upstream\n`);
    } finally {
      server.upstream.behaviour.failWith = null;
    }
  });

  it('Ctrl-C (SIGINT) while the job waits cancels it, says so, and exits 1', async () => {
    server.upstream.behaviour.hold = true;
    try {
      const running = start(process.execPath, [BIN, 'generate', 'a held job', '--out', tempDir()], envFor(server));
      // Interrupt once it is following the job (a queue line is printed).
      await waitFor(() => /^(queued \d+|pending)$/m.test(running.stdout()), 20_000);
      const id = jobIdOf(running.stdout())!;
      running.child.kill('SIGINT');
      const run = await running.done;
      expect(run.code).toBe(1);
      expect(run.stderr).toContain(`canceled: job ${id} is CANCELED`);
      expect(savedPaths(run.stdout)).toEqual([]);
      expect((await server.gql(JobDocument, { id })).data!.job!.status).toBe('CANCELED');
    } finally {
      server.upstream.behaviour.hold = false;
    }
  });

  it('cancel ID cancels and prints the final status; a finished job is refused with exit 2', async () => {
    server.upstream.behaviour.hold = true;
    let id: string;
    try {
      id = (await server.gql(Text2ImageDocument, { input: { prompt: 'to be canceled' } })).data!.text2image.id;
      const run = await sd15(['cancel', id], envFor(server));
      expect(run.stderr).toBe('');
      expect(run.code).toBe(0);
      expect(run.stdout).toBe(`${id} CANCELED\n`);
      expect((await server.gql(JobDocument, { id })).data!.job!.status).toBe('CANCELED');
    } finally {
      server.upstream.behaviour.hold = false;
    }

    const done = (await server.gql(Text2ImageDocument, { input: { prompt: 'finishes' } })).data!.text2image.id;
    await waitFor(async () => (await server.gql(JobDocument, { id: done })).data!.job!.status === 'SUCCESS');
    const refused = await sd15(['cancel', done], envFor(server));
    expect(refused.code).toBe(2);
    expect(refused.stderr).toContain(`already finished with status SUCCESS (JOB_ALREADY_FINISHED)`);

    const unknown = await sd15(['cancel', 'no-such-job'], envFor(server));
    expect(unknown.code).toBe(2);
    expect(unknown.stderr).toContain('NOT_FOUND');
  });

  it('jobs prints the key’s jobs newest first, a page at a time (--first, --after)', async () => {
    const key = await server.newKey('cli-jobs');
    const ids: string[] = [];
    for (const prompt of ['first prompt', 'second prompt', 'third prompt']) {
      ids.push((await server.gql(Text2ImageDocument, { input: { prompt } }, key)).data!.text2image.id);
    }
    const page = await sd15(['jobs', '--first', '2'], envFor(server, key));
    expect(page.code).toBe(0);
    const rows = page.stdout.trim().split('\n');
    expect(rows[0]).toMatch(/^ID\s+MODE\s+STATUS\s+CREATED\s+PROMPT$/);
    expect(rows.slice(1).map((r) => r.split(/\s+/)[0])).toEqual([ids[2], ids[1]]);
    expect(rows[1]).toMatch(/^\S+\s+text2image\s+(PENDING|PROCESSING|SUCCESS)\s+\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ\s+third prompt$/);
    const after = /^more: sd15 jobs --after (\S+)$/m.exec(page.stderr)?.[1];
    expect(after).toBeDefined();

    const next = await sd15(['jobs', '--first', '2', '--after', after!], envFor(server, key));
    expect(next.code).toBe(0);
    const nextRows = next.stdout.trim().split('\n');
    expect(nextRows.slice(1).map((r) => r.split(/\s+/)[0])).toEqual([ids[0]]);
    expect(nextRows[1]).toMatch(/first prompt$/);
    expect(next.stderr).toBe('');
  });

  it('generate --json prints one JSON document with the status and the saved files, no progress lines', async () => {
    const out = tempDir();
    const run = await sd15(['generate', 'a json job', '--samples', '2', '--json', '--out', out], envFor(server));
    expect(run.code).toBe(0);
    const result = JSON.parse(run.stdout) as { id: string; status: string; files: string[] };
    expect(result.status).toBe('SUCCESS');
    expect(result.files).toEqual([path.join(out, `${result.id}-1.png`), path.join(out, `${result.id}-2.png`)]);
    expect(result.files.every((f) => existsSync(f))).toBe(true);
  });
});
