import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { EmbeddingFileError, loadEmbeddingFile, parseEmbedding, widthHint } from '../src/diffusion/embeddings/index.js';
import {
  type DictSpec,
  encodeFloats,
  Pickler,
  rawSafetensors,
  safetensorsFile,
  torchArchiveWithPickle,
  torchSaveBytes,
  zipArchive,
} from '../scripts/tiny-models/torch-writers.js';

const ramp = (n: number, scale = 0.25) => Array.from({ length: n }, (_, i) => ((i % 17) - 8) * scale);
const W = 768;

const tensor = (dtype: 'F32' | 'F16' | 'BF16', shape: number[], storage: number[], extra: object = {}) => ({
  tensor: { dtype, shape, storage, ...extra },
});

function refused(buf: Uint8Array, fileName: string, pattern: RegExp): void {
  let err: unknown;
  try {
    parseEmbedding(buf, fileName);
  } catch (e) {
    err = e;
  }
  expect(err).toBeInstanceOf(EmbeddingFileError);
  const message = (err as Error).message;
  expect(message).toContain(fileName);
  expect(message).toMatch(pattern);
}

describe('safetensors embeddings', () => {
  it('reads a single [1, D] tensor under any key, keeping the key as the token name', () => {
    const values = ramp(W);
    const e = parseEmbedding(
      safetensorsFile([{ name: '<cat-toy>', dtype: 'F32', shape: [1, W], data: encodeFloats(values, 'F32') }]),
      'cat.safetensors',
    );
    expect(e).toMatchObject({ count: 1, width: W, tokenName: '<cat-toy>', format: 'safetensors' });
    expect(Array.from(e.vectors)).toEqual(values);
  });

  it('reads a [D] tensor as one vector', () => {
    const e = parseEmbedding(
      safetensorsFile([{ name: 'x', dtype: 'F32', shape: [W], data: encodeFloats(ramp(W), 'F32') }]),
      'x.safetensors',
    );
    expect([e.count, e.width]).toEqual([1, W]);
  });

  it('reads a multi-vector emb_params tensor (kohya layout), with metadata and other tensors beside it', () => {
    const values = ramp(4 * W, 0.5);
    const file = safetensorsFile(
      [
        { name: 'emb_params', dtype: 'F32', shape: [4, W], data: encodeFloats(values, 'F32') },
        { name: 'extra', dtype: 'I32', shape: [2], data: new Uint8Array(8) },
      ],
      { ss_training: 'yes' },
    );
    const e = parseEmbedding(file, 'style.safetensors');
    expect(e).toMatchObject({ count: 4, width: W, tokenName: null, format: 'safetensors-emb_params' });
    expect(e.vectors[W + 3]).toBe(values[W + 3]);
    expect(e.vectors.length).toBe(4 * W);
  });

  it('converts F16 and BF16 to float32', () => {
    const values = [0.5, -1.25, 2, 0.125, -0, 65504, 3.0517578125e-5, 1];
    const f16 = parseEmbedding(
      safetensorsFile([{ name: 'a', dtype: 'F16', shape: [2, 4], data: encodeFloats(values, 'F16') }]),
      'h.safetensors',
    );
    expect(Array.from(f16.vectors)).toEqual(values);
    const bvalues = [0.5, -1.25, 2, 0.125, 1.5, -3, 256, 1];
    const bf16 = parseEmbedding(
      safetensorsFile([{ name: 'a', dtype: 'BF16', shape: [2, 4], data: encodeFloats(bvalues, 'BF16') }]),
      'b.safetensors',
    );
    expect(Array.from(bf16.vectors)).toEqual(bvalues);
    expect([bf16.count, bf16.width]).toEqual([2, 4]);
  });

  it('refuses several tensors without emb_params, naming them', () => {
    const file = safetensorsFile([
      { name: 'a', dtype: 'F32', shape: [W], data: encodeFloats(ramp(W), 'F32') },
      { name: 'b', dtype: 'F32', shape: [W], data: encodeFloats(ramp(W), 'F32') },
    ]);
    refused(file, 'two.safetensors', /2 entries \("a", "b"\)/);
  });

  it('recognises SDXL clip_l/clip_g files', () => {
    const file = safetensorsFile([
      { name: 'clip_g', dtype: 'F32', shape: [1, 1280], data: encodeFloats(ramp(1280), 'F32') },
      { name: 'clip_l', dtype: 'F32', shape: [1, W], data: encodeFloats(ramp(W), 'F32') },
    ]);
    refused(file, 'xl.safetensors', /SDXL/);
  });

  it('refuses 3-D, empty, NaN, Inf and unsupported dtypes', () => {
    refused(
      safetensorsFile([{ name: 'a', dtype: 'F32', shape: [1, 2, 4], data: encodeFloats(ramp(8), 'F32') }]),
      'c.safetensors',
      /3 dimensions \[1, 2, 4\]/,
    );
    refused(safetensorsFile([{ name: 'a', dtype: 'F32', shape: [0, W], data: new Uint8Array(0) }]), 'e.safetensors', /empty/);
    refused(safetensorsFile([{ name: 'a', dtype: 'F32', shape: [], data: encodeFloats([1], 'F32') }]), 's.safetensors', /scalar/);
    refused(safetensorsFile([]), 'none.safetensors', /no tensors/);
    refused(new Uint8Array(0), 'zero.safetensors', /empty/);
    refused(
      safetensorsFile([{ name: 'a', dtype: 'F32', shape: [4], data: encodeFloats([1, NaN, 2, 3], 'F32') }]),
      'nan.safetensors',
      /NaN/,
    );
    refused(
      safetensorsFile([{ name: 'a', dtype: 'F16', shape: [4], data: encodeFloats([1, Infinity, 2, 3], 'F16') }]),
      'inf.safetensors',
      /infinite/,
    );
    refused(
      safetensorsFile([{ name: 'a', dtype: 'I32', shape: [4], data: new Uint8Array(16) }]),
      'int.safetensors',
      /I32.*only F32, F16 and BF16/,
    );
  });

  it('refuses truncated files and bad offsets', () => {
    const good = safetensorsFile([{ name: 'a', dtype: 'F32', shape: [1, W], data: encodeFloats(ramp(W), 'F32') }]);
    refused(good.subarray(0, 5), 't.safetensors', /truncated/);
    refused(good.subarray(0, 20), 't.safetensors', /truncated/);
    refused(good.subarray(0, good.byteLength - 4), 't.safetensors', /outside the .*data buffer|truncated/);
    const data = encodeFloats(ramp(8), 'F32');
    const hdr = (o: unknown) => JSON.stringify({ a: { dtype: 'F32', shape: [8], data_offsets: o } });
    refused(rawSafetensors(hdr([0, 64]), data), 'o.safetensors', /outside the 32-byte data buffer/);
    refused(rawSafetensors(hdr([4, 36]), Buffer.concat([data, Buffer.alloc(4)])), 'o.safetensors', /hole/);
    refused(rawSafetensors(hdr([0, 28]), data), 'o.safetensors', /needs 32 bytes/);
    refused(rawSafetensors(hdr([-1, 31]), data), 'o.safetensors', /invalid data_offsets/);
    refused(rawSafetensors(hdr([0, 32]), Buffer.concat([data, Buffer.alloc(8)])), 'o.safetensors', /trailing/);
    refused(rawSafetensors(hdr([0, 32]), data, 1n << 40n), 'h.safetensors', /exceeds/);
    refused(rawSafetensors('{not json', data), 'j.safetensors', /not valid JSON/);
    const overlap = JSON.stringify({
      a: { dtype: 'F32', shape: [8], data_offsets: [0, 32] },
      b: { dtype: 'F32', shape: [4], data_offsets: [16, 32] },
    });
    refused(rawSafetensors(overlap, data), 'ov.safetensors', /overlaps/);
  });
});

describe('torch .pt / .bin embeddings', () => {
  it('reads the A1111 layout (string_to_param, name, step, string_to_token)', () => {
    const values = ramp(2 * W);
    const file = torchSaveBytes({
      dict: [
        ['string_to_token', { dict: [['*', 265]] }],
        ['string_to_param', { dict: [['*', tensor('F32', [2, W], values, { requiresGrad: true })]] }],
        ['name', 'my-style'],
        ['step', 1500],
        ['sd_checkpoint', 'e1441589'],
        ['sd_checkpoint_name', null],
      ],
    });
    const e = parseEmbedding(file, 'my-style.pt');
    expect(e).toMatchObject({ count: 2, width: W, tokenName: 'my-style', format: 'pt' });
    expect(Array.from(e.vectors)).toEqual(values);
  });

  it('reads the diffusers layout {token: tensor} (learned_embeds.bin), old-style archive prefix', () => {
    const values = ramp(W, 0.125);
    const file = torchSaveBytes({ dict: [['<cat-toy>', tensor('F32', [W], values)]] }, { prefix: 'learned_embeds' });
    const e = parseEmbedding(file, 'learned_embeds.bin');
    expect(e).toMatchObject({ count: 1, width: W, tokenName: '<cat-toy>', format: 'pt' });
    expect(Array.from(e.vectors)).toEqual(values);
  });

  it('reads F16 / BF16 storages, nn.Parameter wrappers, storage offsets and strided views', () => {
    const h = parseEmbedding(
      torchSaveBytes({ dict: [['t', tensor('F16', [2, 4], [1, 2, 3, 4, 5, 6, 7, 0.5], { parameter: true })]] }),
      'h.pt',
    );
    expect(Array.from(h.vectors)).toEqual([1, 2, 3, 4, 5, 6, 7, 0.5]);
    const b = parseEmbedding(torchSaveBytes({ dict: [['t', tensor('BF16', [4], [1.5, -2, 0.25, 8])]] }), 'b.pt');
    expect(Array.from(b.vectors)).toEqual([1.5, -2, 0.25, 8]);
    // A [2, 3] view at offset 1 of a 7-element storage, transposed layout (stride [1, 2]).
    const v = parseEmbedding(
      torchSaveBytes({ dict: [['t', tensor('F32', [2, 3], [9, 0, 1, 2, 3, 4, 5], { offset: 1, stride: [1, 2] })]] }),
      'v.pt',
    );
    expect(Array.from(v.vectors)).toEqual([0, 2, 4, 1, 3, 5]);
  });

  it('reads original textual-inversion files (string_to_param as nn.ParameterDict, int64 string_to_token)', () => {
    const values = ramp(W);
    const file = torchSaveBytes({
      dict: [
        ['string_to_token', { dict: [['*', { tensor: { dtype: 'I64', shape: [], storage: [265] } }]] }],
        ['string_to_param', { parameterDict: [['*', tensor('F32', [1, W], values, { parameter: true })]] }],
      ],
    });
    const e = parseEmbedding(file, 'old.pt');
    expect(e).toMatchObject({ count: 1, width: W, tokenName: null, format: 'pt' });
    expect(Array.from(e.vectors)).toEqual(values);
  });

  it('refuses malicious globals, naming them, without running anything', () => {
    const osSystem = new Pickler().proto(2).global('os', 'system').str('touch /tmp/pwned').tuple(1).reduce().stop().bytes();
    refused(torchArchiveWithPickle(osSystem), 'evil.pt', /refused pickle global 'os\.system'/);
    const evalG = new Pickler().proto(2).global('builtins', 'eval').str('1+1').tuple(1).reduce().stop().bytes();
    refused(torchArchiveWithPickle(evalG), 'evil.bin', /refused pickle global 'builtins\.eval'/);
    const py2 = new Pickler().proto(2).global('__builtin__', 'getattr').stop().bytes();
    refused(torchArchiveWithPickle(py2), 'evil.pt', /'__builtin__\.getattr'/);
    const stackG = new Pickler().proto(4).stackGlobal('subprocess', 'Popen').stop().bytes();
    refused(torchArchiveWithPickle(stackG), 'evil.pt', /'subprocess\.Popen'/);
    // A malicious global hidden inside an otherwise normal A1111 dict.
    const hidden = torchSaveBytes({
      dict: [
        ['string_to_param', { dict: [['*', tensor('F32', [4], [1, 2, 3, 4])]] }],
        ['name', { raw: (p) => p.global('posix', 'system').str('id').tuple(1).reduce() }],
      ],
    });
    refused(hidden, 'hidden.pt', /posix\.system/);
  });

  it('refuses opcodes and constructions outside the restricted set', () => {
    const inst = new Pickler()
      .proto(2)
      .mark()
      .raw(0x69, ...Buffer.from('os\nsystem\n'))
      .stop()
      .bytes();
    refused(torchArchiveWithPickle(inst), 'i.pt', /refused pickle opcode INST \(0x69\)/);
    const obj = new Pickler().proto(2).mark().global('collections', 'OrderedDict').raw(0x6f).stop().bytes();
    refused(torchArchiveWithPickle(obj), 'o.pt', /refused pickle opcode OBJ/);
    const ext = new Pickler().proto(2).raw(0x82, 1).stop().bytes();
    refused(torchArchiveWithPickle(ext), 'x.pt', /EXT1/);
    const newobj = new Pickler().proto(2).global('collections', 'OrderedDict').emptyTuple().newobj().stop().bytes();
    refused(torchArchiveWithPickle(newobj), 'n.pt', /refused NEWOBJ of collections\.OrderedDict/);
    const reduceStorage = new Pickler().proto(2).global('torch', 'FloatStorage').emptyTuple().reduce().stop().bytes();
    refused(torchArchiveWithPickle(reduceStorage), 'r.pt', /refused REDUCE of torch\.FloatStorage/);
    const build = new Pickler().proto(2).emptyDict().emptyDict().build().stop().bytes();
    refused(torchArchiveWithPickle(build), 'b.pt', /refused BUILD on dict/);
    const persid = new Pickler().proto(2).str('module').tuple(1).binpersid().stop().bytes();
    refused(torchArchiveWithPickle(persid), 'p.pt', /only torch storages/);
    const truncated = new Pickler().proto(2).emptyDict().mark().str('a').bytes();
    refused(torchArchiveWithPickle(truncated), 't.pt', /truncated/);
  });

  it('refuses legacy torch files, compressed entries, truncated archives and bad offsets', () => {
    refused(Buffer.from([0x80, 0x02, 0x8a, 0x0a, 0x6c, 0xfc, 0x9c, 0x46, 0xf9, 0x20]), 'legacy.pt', /legacy/);
    refused(Buffer.from('hello world'), 'junk.bin', /not a torch\.save zip/);
    const value = (): DictSpec => ({ dict: [['t', tensor('F32', [W], ramp(W))]] });
    refused(torchSaveBytes(value(), { compress: true }), 'z.pt', /compressed \(deflate, method 8\)/);
    const good = torchSaveBytes(value());
    expect(parseEmbedding(good, 'ok.pt').width).toBe(W);
    refused(good.subarray(0, good.byteLength - 10), 'cut.pt', /end-of-central-directory/);
    refused(good.subarray(0, 2000), 'cut.pt', /end-of-central-directory/);
    // Point the central directory past the end of the file.
    const badCd = Buffer.from(good);
    badCd.writeUInt32LE(badCd.byteLength + 100, badCd.byteLength - 6);
    refused(badCd, 'cd.pt', /central directory lies outside/);
    // Point the first entry's local header at garbage.
    const badLocal = Buffer.from(good);
    const cdOffset = badLocal.readUInt32LE(badLocal.byteLength - 6);
    badLocal.writeUInt32LE(7, cdOffset + 42);
    refused(badLocal, 'lh.pt', /bad local header offset 7/);
    // Flip a byte of the storage: CRC mismatch.
    const corrupt = Buffer.from(good);
    const at = corrupt.indexOf(Buffer.from('archive/data/0')) + 200;
    corrupt[at] = (corrupt[at] ?? 0) ^ 0xff;
    refused(corrupt, 'crc.pt', /CRC-32/);
    // Saturated EOCD fields mean zip64.
    const z64 = Buffer.from(good);
    z64.writeUInt32LE(0xffffffff, z64.byteLength - 6);
    refused(z64, 'z64.pt', /zip64/);
    // Not a torch archive at all.
    refused(zipArchive([{ name: 'readme.txt', data: Buffer.from('hi') }]), 'plain.pt', /no <dir>\/data\.pkl/);
  });

  it('refuses storages whose size disagrees with the declaration and tensors that overrun them', () => {
    refused(
      torchSaveBytes({ dict: [['t', tensor('F32', [4], [1, 2, 3, 4], { numel: 8 })]] }),
      's.pt',
      /holds 16 bytes but is declared as 8 F32 values/,
    );
    refused(torchSaveBytes({ dict: [['t', tensor('F32', [2, 4], [1, 2, 3, 4], {})]] }), 's.pt', /does not fit in its storage/);
    refused(torchSaveBytes({ dict: [['t', tensor('F32', [4], [1, 2, 3, 4], { offset: 1 })]] }), 's.pt', /does not fit/);
    refused(torchSaveBytes({ dict: [['t', tensor('F32', [2, 2], [1, 2, 3, 4], { stride: [3, 1] })]] }), 's.pt', /does not fit/);
    const missing = new Pickler()
      .proto(2)
      .global('torch._utils', '_rebuild_tensor_v2')
      .mark()
      .mark()
      .str('storage')
      .global('torch', 'FloatStorage')
      .str('5')
      .str('cpu')
      .int(4)
      .tuple(5)
      .binpersid()
      .int(0)
      .int(4)
      .tuple(1)
      .int(1)
      .tuple(1)
      .bool(false)
      .global('collections', 'OrderedDict')
      .emptyTuple()
      .reduce()
      .tuple(6)
      .reduce()
      .stop()
      .bytes();
    refused(torchArchiveWithPickle(missing), 'm.pt', /storage "5" is missing/);
  });

  it('refuses ambiguous dicts, 3-D tensors and NaN values', () => {
    refused(
      torchSaveBytes({
        dict: [
          ['a', tensor('F32', [4], [1, 2, 3, 4])],
          ['b', tensor('F32', [4], [1, 2, 3, 4])],
        ],
      }),
      'amb.pt',
      /2 entries/,
    );
    refused(torchSaveBytes({ dict: [['a', tensor('F32', [1, 1, 4], [1, 2, 3, 4])]] }), '3d.pt', /3 dimensions/);
    refused(torchSaveBytes({ dict: [['a', tensor('F32', [4], [1, NaN, 3, 4])]] }), 'nan.pt', /NaN/);
    refused(torchSaveBytes({ dict: [['a', 'not a tensor']] }), 'str.pt', /not a tensor/);
  });
});

describe('files and widths', () => {
  let dir: string;
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'emb-'));
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('loads from disk and refuses wrong extensions and missing files', async () => {
    const path = join(dir, 'thing.safetensors');
    await writeFile(path, safetensorsFile([{ name: 'thing', dtype: 'F32', shape: [1, W], data: encodeFloats(ramp(W), 'F32') }]));
    const e = await loadEmbeddingFile(path);
    expect(e).toMatchObject({ count: 1, width: W, tokenName: 'thing' });
    await writeFile(join(dir, 'thing.txt'), 'x');
    await expect(loadEmbeddingFile(join(dir, 'thing.txt'))).rejects.toThrow(/"thing\.txt" has an unsupported extension "\.txt"/);
    await expect(loadEmbeddingFile(join(dir, 'absent.pt'))).rejects.toThrow(/"absent\.pt" cannot be read/);
    expect(() => parseEmbedding(new Uint8Array(10), 'noext')).toThrow(/unsupported extension/);
  });

  it('names the model family a width that does not fit belongs to, when it is a known one', () => {
    expect(widthHint(1024, 768)).toBe(' (is it an SD 2.x embedding?)');
    expect(widthHint(768, 1024)).toBe(' (is it an SD 1.x embedding?)');
    expect(widthHint(1280, 768)).toBe(' (is it an SDXL embedding?)');
    expect(widthHint(512, 768)).toBe('');
  });
});
