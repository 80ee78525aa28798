import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import type { TypedDocumentNode } from '@graphql-typed-document-node/core';
import type { ExecutionResult } from 'graphql';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  Image2ImageDocument,
  InpaintingDocument,
  JobsDocument,
  ModelsDocument,
  Text2ImageDocument,
  type Image2ImageInput,
  type InpaintingInput,
  type JobFieldsFragment,
  type Text2ImageInput,
} from '../src/client/generated/graphql.js';
import { startTestServer, type TestServer } from './helpers/test-server.js';

/*
 * Every validation rule of the three generation mutations (and of Query.jobs), over real HTTP
 * with the typed documents: each refusal is BAD_USER_INPUT with one issue per bad field
 * ({path, field, code, message}), and a refused request leaves the caller's job count unchanged.
 */

const EMBEDDING_ID = 'f84133b4-aad8-44be-b9ce-7e7e3a8c111f';
const CATALOGUE = {
  models: [
    { id: 'sd1.5', name: 'SD 1.5', kind: 'CHECKPOINT' },
    { id: EMBEDDING_ID, name: 'UnrealisticDream', kind: 'EMBEDDING', triggerWords: ['UnrealisticDream'], vectors: 2 },
  ],
};
const INIT = 'https://example.test/cottage.png';
const MASK = 'https://example.test/mask_image.png';

interface Issue {
  path: (string | number)[];
  field: string;
  code: string;
  message: string;
}
type Expected = { path: (string | number)[]; code: string; message?: string | RegExp };

/** GraphQL coerces a single value into a one-element list; the typed inputs cannot say so. */
const singleId = (id: string) => id as unknown as string[];

describe('input validation', () => {
  let server: TestServer;
  let catalogueDir: string;

  beforeAll(async () => {
    catalogueDir = mkdtempSync(path.join(tmpdir(), 'sd-api-catalogue-'));
    const cataloguePath = path.join(catalogueDir, 'catalogue.json');
    writeFileSync(cataloguePath, JSON.stringify(CATALOGUE));
    server = await startTestServer({ env: { IMAGEPIPELINE_CATALOGUE: cataloguePath } });
  });
  afterAll(async () => {
    await server?.stop();
    if (catalogueDir) rmSync(catalogueDir, { recursive: true, force: true });
  });

  /** How many jobs the caller has, paging through all of them. */
  async function jobCount(): Promise<number> {
    let count = 0;
    let after: string | null = null;
    for (;;) {
      const page: ExecutionResult<{ jobs: { edges: unknown[]; pageInfo: { hasNextPage: boolean; endCursor: string | null } } }> =
        await server.gql(JobsDocument, { first: 100, after });
      expect(page.errors).toBeUndefined();
      count += page.data!.jobs.edges.length;
      if (!page.data!.jobs.pageInfo.hasNextPage) return count;
      after = page.data!.jobs.pageInfo.endCursor;
    }
  }

  /** The issues of a BAD_USER_INPUT refusal, checking its shape on the way. */
  function issuesOf(result: ExecutionResult<unknown>): Issue[] {
    expect(result.errors, JSON.stringify(result)).toHaveLength(1);
    const error = result.errors![0]!;
    expect(error.extensions?.code, JSON.stringify(result)).toBe('BAD_USER_INPUT');
    const issues = error.extensions?.issues as Issue[];
    expect(Array.isArray(issues)).toBe(true);
    for (const issue of issues) {
      expect(issue.field).toBe(issue.path.join('.'));
      expect(typeof issue.message).toBe('string');
      expect(issue.message.length).toBeGreaterThan(0);
    }
    return issues;
  }

  function expectIssues(result: ExecutionResult<unknown>, expected: Expected[]): Issue[] {
    expect(result.data ?? null, JSON.stringify(result)).toBeNull();
    const issues = issuesOf(result);
    expect(issues).toEqual(
      expected.map((e) =>
        expect.objectContaining({
          path: e.path,
          field: e.path.join('.'),
          code: e.code,
          ...(e.message === undefined
            ? {}
            : { message: typeof e.message === 'string' ? expect.stringContaining(e.message) : expect.stringMatching(e.message) }),
        }),
      ),
    );
    return issues;
  }

  /** Sends the request, expects exactly these issues, and checks that no job was created. */
  async function expectRefused<R, V>(doc: TypedDocumentNode<R, V>, variables: V, expected: Expected[]): Promise<Issue[]> {
    const before = await jobCount();
    const issues = expectIssues(await server.gql(doc, variables), expected);
    expect(await jobCount()).toBe(before);
    return issues;
  }

  const t2i = (input: Partial<Text2ImageInput>) => ({ input: { prompt: 'a lighthouse at dusk', ...input } });
  const i2i = (input: Partial<Image2ImageInput>) => ({ input: { prompt: 'a cottage, watercolor', initImage: INIT, ...input } });
  const inp = (input: Partial<InpaintingInput>) => ({
    input: { prompt: 'a red door', initImage: INIT, maskImage: MASK, ...input },
  });

  describe('text2image refusals', () => {
    const cases: [string, Text2ImageInput, Expected[]][] = [
      ['empty prompt', { prompt: '' }, [{ path: ['input', 'prompt'], code: 'INVALID_VALUE' }]],
      ['whitespace-only prompt', { prompt: ' \t\n  ' }, [{ path: ['input', 'prompt'], code: 'INVALID_VALUE' }]],
      ['missing prompt', {}, [{ path: ['input', 'prompt'], code: 'REQUIRED' }]],
      ['null prompt', { prompt: null }, [{ path: ['input', 'prompt'], code: 'REQUIRED' }]],
      ['over-long prompt', { prompt: 'a'.repeat(2001) }, [{ path: ['input', 'prompt'], code: 'INVALID_LENGTH' }]],
      [
        'over-long negative prompt',
        { prompt: 'x', negativePrompt: 'b'.repeat(2001) },
        [{ path: ['input', 'negativePrompt'], code: 'INVALID_LENGTH' }],
      ],
      [
        'numInferenceSteps 0',
        { prompt: 'x', numInferenceSteps: 0 },
        [{ path: ['input', 'numInferenceSteps'], code: 'OUT_OF_RANGE', message: '1 and 100' }],
      ],
      [
        'numInferenceSteps 101',
        { prompt: 'x', numInferenceSteps: 101 },
        [{ path: ['input', 'numInferenceSteps'], code: 'OUT_OF_RANGE', message: '1 and 100' }],
      ],
      [
        'guidanceScale 0.5',
        { prompt: 'x', guidanceScale: 0.5 },
        [{ path: ['input', 'guidanceScale'], code: 'OUT_OF_RANGE', message: '1 and 20' }],
      ],
      [
        'guidanceScale 21',
        { prompt: 'x', guidanceScale: 21 },
        [{ path: ['input', 'guidanceScale'], code: 'OUT_OF_RANGE', message: '1 and 20' }],
      ],
      ['samples 0', { prompt: 'x', samples: 0 }, [{ path: ['input', 'samples'], code: 'OUT_OF_RANGE', message: '1 and 4' }]],
      ['samples 5', { prompt: 'x', samples: 5 }, [{ path: ['input', 'samples'], code: 'OUT_OF_RANGE', message: '1 and 4' }]],
      ['width 100 (not a multiple of 8)', { prompt: 'x', width: 100 }, [{ path: ['input', 'width'], code: 'NOT_MULTIPLE_OF_8' }]],
      ['height 513 (not a multiple of 8)', { prompt: 'x', height: 513 }, [{ path: ['input', 'height'], code: 'NOT_MULTIPLE_OF_8' }]],
      ['width 56 (too small)', { prompt: 'x', width: 56 }, [{ path: ['input', 'width'], code: 'OUT_OF_RANGE', message: '64 and 1024' }]],
      [
        'width 1032 (too large)',
        { prompt: 'x', width: 1032 },
        [{ path: ['input', 'width'], code: 'OUT_OF_RANGE', message: '64 and 1024' }],
      ],
      ['height 56 (too small)', { prompt: 'x', height: 56 }, [{ path: ['input', 'height'], code: 'OUT_OF_RANGE' }]],
      ['height 1032 (too large)', { prompt: 'x', height: 1032 }, [{ path: ['input', 'height'], code: 'OUT_OF_RANGE' }]],
      [
        'width 60 (too small and not a multiple of 8)',
        { prompt: 'x', width: 60 },
        [
          { path: ['input', 'width'], code: 'OUT_OF_RANGE' },
          { path: ['input', 'width'], code: 'NOT_MULTIPLE_OF_8' },
        ],
      ],
      ['seed -2', { prompt: 'x', seed: -2 }, [{ path: ['input', 'seed'], code: 'OUT_OF_RANGE' }]],
      ['refiner true', { prompt: 'x', refiner: true }, [{ path: ['input', 'refiner'], code: 'NOT_SUPPORTED', message: 'refiner' }]],
      ['blank modelId', { prompt: 'x', modelId: '   ' }, [{ path: ['input', 'modelId'], code: 'INVALID_LENGTH' }]],
      [
        'more than 16 embeddings',
        { prompt: 'x', embeddings: Array.from({ length: 17 }, (_, i) => `emb-${i}`) },
        [{ path: ['input', 'embeddings'], code: 'INVALID_LENGTH', message: '16' }],
      ],
      [
        'an empty embedding id',
        { prompt: 'x', embeddings: [EMBEDDING_ID, ''] },
        [{ path: ['input', 'embeddings', 1], code: 'INVALID_LENGTH' }],
      ],
    ];
    it.each(cases)('refuses %s', async (_label, input, expected) => {
      await expectRefused(Text2ImageDocument, { input }, expected);
    });

    it('refuses several bad fields at once with one issue each', async () => {
      await expectRefused(
        Text2ImageDocument,
        {
          input: {
            prompt: '  ',
            numInferenceSteps: 0,
            guidanceScale: 21,
            samples: 5,
            width: 100,
            height: 1032,
            seed: -5,
            refiner: true,
          },
        },
        [
          { path: ['input', 'prompt'], code: 'INVALID_VALUE' },
          { path: ['input', 'numInferenceSteps'], code: 'OUT_OF_RANGE' },
          { path: ['input', 'guidanceScale'], code: 'OUT_OF_RANGE' },
          { path: ['input', 'samples'], code: 'OUT_OF_RANGE' },
          { path: ['input', 'width'], code: 'NOT_MULTIPLE_OF_8' },
          { path: ['input', 'height'], code: 'OUT_OF_RANGE' },
          { path: ['input', 'seed'], code: 'OUT_OF_RANGE' },
          { path: ['input', 'refiner'], code: 'NOT_SUPPORTED' },
        ],
      );
    });

    it('refuses non-integer and out-of-Int seeds at GraphQL coercion, naming the field, without creating a job', async () => {
      // GraphQL's Int cannot carry 1.5 or 2^31, so graphql-js refuses them before zod sees them;
      // the error must still say which field was wrong.
      for (const seed of [1.5, 2_147_483_648]) {
        const before = await jobCount();
        const result = await server.gql(Text2ImageDocument, t2i({ seed }));
        expect(result.data ?? null).toBeNull();
        expect(result.errors, JSON.stringify(result)).toHaveLength(1);
        expect(result.errors![0]!.message).toContain('input.seed');
        expect(await jobCount()).toBe(before);
      }
      const steps = await server.gql(Text2ImageDocument, t2i({ numInferenceSteps: 20.5 }));
      expect(steps.errors, JSON.stringify(steps)).toHaveLength(1);
      expect(steps.errors![0]!.message).toContain('input.numInferenceSteps');
    });
  });

  describe('catalogue refusals', () => {
    it('refuses an unknown modelId with UNKNOWN_MODEL naming the id', async () => {
      await expectRefused(Text2ImageDocument, t2i({ modelId: 'no-such-checkpoint' }), [
        { path: ['input', 'modelId'], code: 'UNKNOWN_MODEL', message: '"no-such-checkpoint"' },
      ]);
    });

    it('refuses an embedding id as modelId (it is not a checkpoint)', async () => {
      await expectRefused(Text2ImageDocument, t2i({ modelId: EMBEDDING_ID }), [
        { path: ['input', 'modelId'], code: 'UNKNOWN_MODEL', message: EMBEDDING_ID },
      ]);
    });

    it('refuses an unknown embedding given as a single id, at index 0', async () => {
      await expectRefused(Text2ImageDocument, t2i({ embeddings: singleId('no-such-embedding') }), [
        { path: ['input', 'embeddings', 0], code: 'UNKNOWN_EMBEDDING', message: '"no-such-embedding"' },
      ]);
    });

    it('refuses unknown embeddings in a list, each at its own index', async () => {
      await expectRefused(Text2ImageDocument, t2i({ embeddings: ['nope-a', EMBEDDING_ID, 'nope-b'] }), [
        { path: ['input', 'embeddings', 0], code: 'UNKNOWN_EMBEDDING', message: '"nope-a"' },
        { path: ['input', 'embeddings', 2], code: 'UNKNOWN_EMBEDDING', message: '"nope-b"' },
      ]);
    });

    it('points at the index the client sent even when an earlier id is repeated', async () => {
      // The issue path must address the caller's input, not a deduplicated copy of it.
      await expectRefused(Text2ImageDocument, t2i({ embeddings: [EMBEDDING_ID, EMBEDDING_ID, 'nope'] }), [
        { path: ['input', 'embeddings', 2], code: 'UNKNOWN_EMBEDDING', message: '"nope"' },
      ]);
    });

    it('refuses a checkpoint id given as an embedding', async () => {
      await expectRefused(Text2ImageDocument, t2i({ embeddings: ['sd1.5'] }), [
        { path: ['input', 'embeddings', 0], code: 'UNKNOWN_EMBEDDING', message: '"sd1.5"' },
      ]);
    });

    it('refuses unknown model and embeddings in image2image and inpainting too', async () => {
      await expectRefused(Image2ImageDocument, i2i({ modelId: 'nope-model', embeddings: ['nope'] }), [
        { path: ['input', 'modelId'], code: 'UNKNOWN_MODEL', message: '"nope-model"' },
        { path: ['input', 'embeddings', 0], code: 'UNKNOWN_EMBEDDING', message: '"nope"' },
      ]);
      await expectRefused(InpaintingDocument, inp({ embeddings: singleId('nope') }), [
        { path: ['input', 'embeddings', 0], code: 'UNKNOWN_EMBEDDING', message: '"nope"' },
      ]);
    });
  });

  describe('image2image and inpainting refusals', () => {
    const i2iCases: [string, Image2ImageInput, Expected[]][] = [
      ['strength -0.1', i2i({ strength: -0.1 }).input, [{ path: ['input', 'strength'], code: 'OUT_OF_RANGE', message: '0 and 1' }]],
      ['strength 1.1', i2i({ strength: 1.1 }).input, [{ path: ['input', 'strength'], code: 'OUT_OF_RANGE', message: '0 and 1' }]],
      ['a missing initImage', { prompt: 'x' }, [{ path: ['input', 'initImage'], code: 'REQUIRED' }]],
      ['a null initImage', { prompt: 'x', initImage: null }, [{ path: ['input', 'initImage'], code: 'REQUIRED' }]],
      [
        'an initImage that is not a URL',
        i2i({ initImage: 'cottage.png' }).input,
        [{ path: ['input', 'initImage'], code: 'INVALID_VALUE' }],
      ],
      [
        'an ftp: initImage',
        i2i({ initImage: 'ftp://example.test/cottage.png' }).input,
        [{ path: ['input', 'initImage'], code: 'INVALID_VALUE' }],
      ],
      ['a file: initImage', i2i({ initImage: 'file:///etc/passwd' }).input, [{ path: ['input', 'initImage'], code: 'INVALID_VALUE' }]],
      [
        'a data: URL that is not an image',
        i2i({ initImage: 'data:text/plain;base64,aGVsbG8=' }).input,
        [{ path: ['input', 'initImage'], code: 'INVALID_VALUE' }],
      ],
      ['refiner true', i2i({ refiner: true }).input, [{ path: ['input', 'refiner'], code: 'NOT_SUPPORTED' }]],
      ['an empty prompt', i2i({ prompt: '' }).input, [{ path: ['input', 'prompt'], code: 'INVALID_VALUE' }]],
    ];
    it.each(i2iCases)('image2image refuses %s', async (_label, input, expected) => {
      await expectRefused(Image2ImageDocument, { input }, expected);
    });

    const inpCases: [string, InpaintingInput, Expected[]][] = [
      ['strength -0.1', inp({ strength: -0.1 }).input, [{ path: ['input', 'strength'], code: 'OUT_OF_RANGE' }]],
      ['strength 1.1', inp({ strength: 1.1 }).input, [{ path: ['input', 'strength'], code: 'OUT_OF_RANGE' }]],
      ['a missing maskImage', { prompt: 'x', initImage: INIT }, [{ path: ['input', 'maskImage'], code: 'REQUIRED' }]],
      ['a missing initImage', { prompt: 'x', maskImage: MASK }, [{ path: ['input', 'initImage'], code: 'REQUIRED' }]],
      [
        'missing initImage and maskImage',
        { prompt: 'x' },
        [
          { path: ['input', 'initImage'], code: 'REQUIRED' },
          { path: ['input', 'maskImage'], code: 'REQUIRED' },
        ],
      ],
      [
        'an ftp: maskImage',
        inp({ maskImage: 'ftp://example.test/mask.png' }).input,
        [{ path: ['input', 'maskImage'], code: 'INVALID_VALUE' }],
      ],
      ['an initImage that is not a URL', inp({ initImage: 'not a url' }).input, [{ path: ['input', 'initImage'], code: 'INVALID_VALUE' }]],
      ['samples 5', inp({ samples: 5 }).input, [{ path: ['input', 'samples'], code: 'OUT_OF_RANGE' }]],
      ['maskBlur -1', inp({ maskBlur: -1 }).input, [{ path: ['input', 'maskBlur'], code: 'OUT_OF_RANGE', message: '0 and 64' }]],
      ['maskBlur 65', inp({ maskBlur: 65 }).input, [{ path: ['input', 'maskBlur'], code: 'OUT_OF_RANGE', message: '0 and 64' }]],
      [
        'maskBlur -1 with strength 2 (one issue each)',
        inp({ maskBlur: -1, strength: 2 }).input,
        [
          { path: ['input', 'strength'], code: 'OUT_OF_RANGE' },
          { path: ['input', 'maskBlur'], code: 'OUT_OF_RANGE' },
        ],
      ],
    ];
    it.each(inpCases)('inpainting refuses %s', async (_label, input, expected) => {
      await expectRefused(InpaintingDocument, { input }, expected);
    });

    it('inpainting refuses a fractional maskBlur and a non-boolean keepUnmasked at GraphQL coercion, naming the field', async () => {
      for (const [input, name] of [
        [inp({ maskBlur: 2.5 }).input, 'input.maskBlur'],
        [{ ...inp({}).input, keepUnmasked: 'yes' as unknown as boolean }, 'input.keepUnmasked'],
      ] as const) {
        const before = await jobCount();
        const result = await server.gql(InpaintingDocument, { input });
        expect(result.data ?? null).toBeNull();
        expect(result.errors, JSON.stringify(result)).toHaveLength(1);
        expect(result.errors![0]!.message).toContain(name);
        expect(await jobCount()).toBe(before);
      }
    });

    it('has maskBlur and keepUnmasked on inpainting only (image2image refuses them as unknown fields)', async () => {
      const result = await server.gql(Image2ImageDocument, { input: { ...i2i({}).input, maskBlur: 2 } as Image2ImageInput });
      expect(result.data ?? null).toBeNull();
      expect(result.errors![0]!.message).toMatch(/maskBlur/);
    });
  });

  describe('accepted boundaries', () => {
    /** Sends the request, expects a new PENDING job, and checks the count grew by one. */
    async function expectAccepted<R, V>(doc: TypedDocumentNode<R, V>, variables: V, pick: (data: R) => JobFieldsFragment) {
      const before = await jobCount();
      const result = await server.gql(doc, variables);
      expect(result.errors, JSON.stringify(result.errors)).toBeUndefined();
      const job = pick(result.data!);
      expect(job.status).toBe('PENDING');
      expect(await jobCount()).toBe(before + 1);
      return job;
    }
    const acceptT2i = (input: Partial<Text2ImageInput>) => expectAccepted(Text2ImageDocument, t2i(input), (d) => d.text2image);

    it('accepts numInferenceSteps 1 and 100', async () => {
      for (const n of [1, 100]) expect((await acceptT2i({ numInferenceSteps: n })).parameters.numInferenceSteps).toBe(n);
    });

    it('accepts guidanceScale 1 and 20', async () => {
      for (const g of [1, 20]) expect((await acceptT2i({ guidanceScale: g })).parameters.guidanceScale).toBe(g);
    });

    it('accepts samples 1 and 4', async () => {
      for (const s of [1, 4]) expect((await acceptT2i({ samples: s })).parameters.samples).toBe(s);
    });

    it('accepts width and height 64 and 1024', async () => {
      for (const d of [64, 1024]) {
        const job = await acceptT2i({ width: d, height: d });
        expect(job.parameters).toMatchObject({ width: d, height: d });
      }
    });

    it('accepts seed 0 and 2147483647 and reports them', async () => {
      for (const seed of [0, 2_147_483_647]) {
        const job = await acceptT2i({ seed });
        expect(job.seed).toBe(seed);
        expect(job.parameters.seed).toBe(seed);
      }
    });

    it('accepts refiner false and a padded prompt (trimmed)', async () => {
      const job = await acceptT2i({ refiner: false, prompt: '  a fox  ' });
      expect(job.parameters.prompt).toBe('a fox');
    });

    it('accepts strength 0 and 1 for image2image and inpainting', async () => {
      for (const strength of [0, 1]) {
        const a = await expectAccepted(Image2ImageDocument, i2i({ strength }), (d) => d.image2image);
        expect(a.parameters.strength).toBe(strength);
        expect(a.mode).toBe('IMAGE2IMAGE');
        const b = await expectAccepted(InpaintingDocument, inp({ strength }), (d) => d.inpainting);
        expect(b.parameters.strength).toBe(strength);
        expect(b.mode).toBe('INPAINTING');
      }
    });

    it('accepts maskBlur 0 and 64 and keepUnmasked false for inpainting, echoes them, and the defaults 4 and true', async () => {
      const byDefault = await expectAccepted(InpaintingDocument, inp({}), (d) => d.inpainting);
      expect(byDefault.parameters).toMatchObject({ maskBlur: 4, keepUnmasked: true });
      for (const maskBlur of [0, 64]) {
        const job = await expectAccepted(InpaintingDocument, inp({ maskBlur, keepUnmasked: false }), (d) => d.inpainting);
        expect(job.parameters).toMatchObject({ maskBlur, keepUnmasked: false });
      }
      // null means "not given", as for every field: the defaults apply.
      const nulls = await expectAccepted(InpaintingDocument, inp({ maskBlur: null, keepUnmasked: null }), (d) => d.inpainting);
      expect(nulls.parameters).toMatchObject({ maskBlur: 4, keepUnmasked: true });
      // The other modes have neither; nor does a remote engine know its upstream's noise source.
      const t = await acceptT2i({});
      expect(t.parameters).toMatchObject({ maskBlur: null, keepUnmasked: null, noise: null });
      const i = await expectAccepted(Image2ImageDocument, i2i({}), (d) => d.image2image);
      expect(i.parameters).toMatchObject({ maskBlur: null, keepUnmasked: null, noise: null });
    });

    it('accepts an http: URL and a data: image URL as initImage', async () => {
      await expectAccepted(Image2ImageDocument, i2i({ initImage: 'http://example.test/a.png' }), (d) => d.image2image);
      // A real 2x2 PNG: a data: URL's bytes are checked when the request arrives.
      const dataUrl =
        'data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAAAIAAAACCAIAAAD91JpzAAAACXBIWXMAAAPoAAAD6AG1e1JrAAAAFklEQVQImWM4oaEhd0KOQUTkzq9fvwAhGgYPLDNuGQAAAABJRU5ErkJggg==';
      const job = await expectAccepted(Image2ImageDocument, i2i({ initImage: dataUrl }), (d) => d.image2image);
      expect(job.parameters.initImage).toBe(dataUrl);
    });

    it('accepts a known embedding as a single id and as a list, in every mode', async () => {
      const single = await acceptT2i({ embeddings: singleId(EMBEDDING_ID), negativePrompt: 'UnrealisticDream' });
      expect(single.parameters.embeddings).toEqual([EMBEDDING_ID]);
      const list = await acceptT2i({ embeddings: [EMBEDDING_ID] });
      expect(list.parameters.embeddings).toEqual([EMBEDDING_ID]);
      const repeated = await acceptT2i({ embeddings: [EMBEDDING_ID, EMBEDDING_ID] });
      expect(repeated.parameters.embeddings).toEqual([EMBEDDING_ID]);
      const a = await expectAccepted(Image2ImageDocument, i2i({ embeddings: [EMBEDDING_ID] }), (d) => d.image2image);
      expect(a.parameters.embeddings).toEqual([EMBEDDING_ID]);
      const b = await expectAccepted(InpaintingDocument, inp({ embeddings: singleId(EMBEDDING_ID) }), (d) => d.inpainting);
      expect(b.parameters.embeddings).toEqual([EMBEDDING_ID]);
    });

    it('accepts exactly 16 embeddings (the limit) when they are known', async () => {
      const job = await acceptT2i({ embeddings: Array.from({ length: 16 }, () => EMBEDDING_ID) });
      expect(job.parameters.embeddings).toEqual([EMBEDDING_ID]);
    });
  });

  describe('Query.models', () => {
    it('lists the checkpoint and the embedding with its trigger words', async () => {
      const all = await server.gql(ModelsDocument, {});
      expect(all.errors).toBeUndefined();
      expect(all.data!.models.map((m) => m.id).sort()).toEqual([EMBEDDING_ID, 'sd1.5'].sort());
      const embedding = all.data!.models.find((m) => m.id === EMBEDDING_ID);
      expect(embedding).toMatchObject({
        name: 'UnrealisticDream',
        kind: 'EMBEDDING',
        baseModel: 'SD_1_5',
        triggerWords: ['UnrealisticDream'],
        vectors: 2,
        inpainting: false,
      });
      expect(all.data!.models.find((m) => m.id === 'sd1.5')).toMatchObject({ kind: 'CHECKPOINT', triggerWords: [] });
    });

    it('filters by kind and by base model', async () => {
      const embeddings = await server.gql(ModelsDocument, { filter: { kind: 'EMBEDDING' } });
      expect(embeddings.data!.models.map((m) => m.id)).toEqual([EMBEDDING_ID]);
      const checkpoints = await server.gql(ModelsDocument, { filter: { kind: 'CHECKPOINT' } });
      expect(checkpoints.data!.models.map((m) => m.id)).toEqual(['sd1.5']);
      const sd15 = await server.gql(ModelsDocument, { filter: { baseModel: 'SD_1_5' } });
      expect(sd15.data!.models).toHaveLength(2);
      const both = await server.gql(ModelsDocument, { filter: { kind: 'EMBEDDING', baseModel: 'SD_1_5' } });
      expect(both.data!.models.map((m) => m.id)).toEqual([EMBEDDING_ID]);
    });
  });

  describe('Query.jobs arguments', () => {
    it.each([0, -1, 101])('refuses first: %i', async (first) => {
      const result = await server.gql(JobsDocument, { first });
      expectIssues(result, [{ path: ['first'], code: 'OUT_OF_RANGE', message: '1 and 100' }]);
    });

    it('accepts first: 1 and first: 100', async () => {
      for (const first of [1, 100]) {
        const result = await server.gql(JobsDocument, { first });
        expect(result.errors).toBeUndefined();
        expect(result.data!.jobs.edges.length).toBeLessThanOrEqual(first);
      }
    });

    it('refuses a garbage or forged after cursor with BAD_USER_INPUT', async () => {
      for (const after of ['garbage', '!!!', Buffer.from('job:abc').toString('base64url'), Buffer.from('seq:1').toString('base64url')]) {
        const result = await server.gql(JobsDocument, { first: 5, after });
        expectIssues(result, [{ path: ['after'], code: 'INVALID_CURSOR' }]);
      }
    });

    it('accepts the cursor it issued and pages on from it', async () => {
      for (let i = 0; i < 2; i++) await server.gql(Text2ImageDocument, t2i({ prompt: `page filler ${i}` }));
      const first = await server.gql(JobsDocument, { first: 1 });
      expect(first.errors).toBeUndefined();
      expect(first.data!.jobs.pageInfo.hasNextPage).toBe(true);
      const next = await server.gql(JobsDocument, { first: 1, after: first.data!.jobs.pageInfo.endCursor });
      expect(next.errors).toBeUndefined();
      expect(next.data!.jobs.edges).toHaveLength(1);
      expect(next.data!.jobs.edges[0]!.node.id).not.toBe(first.data!.jobs.edges[0]!.node.id);
    });
  });
});
