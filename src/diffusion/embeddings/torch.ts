import { elementReader, FLOAT_DTYPE_BYTES } from './dtype.js';
import { problem } from './types.js';
import { type PyValue, TensorRef, unpickle } from './unpickle.js';
import { isZip, readStoredZip } from './zip.js';

/**
 * torch.save (PyTorch >= 1.6) zip archives: `<dir>/data.pkl` (the pickled object, protocol 2,
 * tensors as persistent ids pointing at storages), `<dir>/data/<key>` (raw storage bytes),
 * `<dir>/version`, and on newer versions `<dir>/byteorder`, `<dir>/.data/...`. The directory
 * name is "archive" on current torch and the file's stem on older ones.
 */
export interface TorchArchive {
  root: PyValue;
  /** Reads a float tensor's elements (row-major, following its strides) as float32. */
  readFloats(t: TensorRef): Float32Array;
}

export function readTorchArchive(buf: Uint8Array): TorchArchive {
  if (!isZip(buf)) {
    if (buf[0] === 0x80) {
      throw problem(
        'this is a legacy (pre-zip, PyTorch < 1.6) torch.save file, which is not supported; re-save it with a current torch or convert it to .safetensors',
      );
    }
    throw problem('not a torch.save zip archive');
  }
  const entries = readStoredZip(buf);
  const pickles = [...entries.keys()].filter((n) => /^[^/]+\/data\.pkl$/.test(n));
  if (pickles.length !== 1) {
    if ([...entries.keys()].some((n) => /^[^/]+\/constants\.pkl$/.test(n))) {
      throw problem('this is a TorchScript archive, not a torch.save file');
    }
    throw problem(
      pickles.length === 0 ? 'zip archive has no <dir>/data.pkl (not a torch.save file)' : 'zip archive has several data.pkl files',
    );
  }
  const prefix = pickles[0]!.slice(0, -'data.pkl'.length);
  const byteorder = entries.get(`${prefix}byteorder`);
  if (byteorder) {
    const order = Buffer.from(byteorder).toString('latin1').trim();
    if (order !== 'little') throw problem(`torch archive byte order is "${order}"; only little-endian is supported`);
  }
  const root = unpickle(entries.get(pickles[0]!)!);

  return {
    root,
    readFloats(t) {
      const { storage } = t;
      if (storage.dtype === 'I64') throw problem('the embedding tensor is an integer tensor, not float');
      const data = entries.get(`${prefix}data/${storage.key}`);
      if (!data) throw problem(`storage "${storage.key}" is missing from the archive`);
      const elemBytes = FLOAT_DTYPE_BYTES[storage.dtype];
      if (data.byteLength !== storage.numel * elemBytes) {
        throw problem(
          `storage "${storage.key}" holds ${data.byteLength} bytes but is declared as ${storage.numel} ${storage.dtype} values (${storage.numel * elemBytes} bytes)`,
        );
      }
      let count = 1;
      let maxIndex = t.storageOffset;
      for (let d = 0; d < t.size.length; d++) {
        const n = t.size[d]!;
        count *= n;
        if (n > 0) maxIndex += (n - 1) * t.stride[d]!;
        if (count > storage.numel || maxIndex > Number.MAX_SAFE_INTEGER) break;
      }
      if (count === 0) return new Float32Array(0);
      if (count > storage.numel || maxIndex >= storage.numel) {
        throw problem(
          `tensor of size [${t.size.join(', ')}] at offset ${t.storageOffset} does not fit in its storage of ${storage.numel} values`,
        );
      }
      const read = elementReader(data, storage.dtype);
      const out = new Float32Array(count);
      // Row-major walk over the (bounded, at most 8-D) index space.
      const idx = new Array<number>(t.size.length).fill(0);
      let src = t.storageOffset;
      for (let i = 0; i < count; i++) {
        out[i] = read(src);
        for (let d = t.size.length - 1; d >= 0; d--) {
          idx[d]!++;
          src += t.stride[d]!;
          if (idx[d]! < t.size[d]!) break;
          src -= idx[d]! * t.stride[d]!;
          idx[d] = 0;
        }
      }
      return out;
    },
  };
}
