import { crc32 } from 'node:zlib';
import { problem } from './types.js';

/**
 * Minimal reader for the zip archives torch.save writes (since PyTorch 1.6): entries are stored
 * (method 0), uncompressed. We parse the end-of-central-directory record and the central
 * directory ourselves, then locate each entry's data through its local header. Compressed,
 * encrypted, multi-disk and zip64-dependent archives are refused. (A zip64 end record that
 * merely accompanies an ordinary, unsaturated end record, as miniz may write, is tolerated.)
 */

const EOCD_SIG = 0x06054b50;
const ZIP64_LOCATOR_SIG = 0x07064b50;
const CENTRAL_SIG = 0x02014b50;
const LOCAL_SIG = 0x04034b50;
const EOCD_LEN = 22;
const CENTRAL_LEN = 46;
const LOCAL_LEN = 30;
const MAX_ENTRIES = 4096;
const MAX_NAME_LEN = 1024;

const METHOD_NAMES: Record<number, string> = { 8: 'deflate', 9: 'deflate64', 12: 'bzip2', 14: 'lzma', 93: 'zstd', 95: 'xz' };

export const isZip = (buf: Uint8Array): boolean =>
  buf.byteLength >= 4 && buf[0] === 0x50 && buf[1] === 0x4b && buf[2] === 0x03 && buf[3] === 0x04;

/** Entry name → entry data (a view into `buf`). */
export function readStoredZip(buf: Uint8Array): Map<string, Uint8Array> {
  const view = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  const len = buf.byteLength;
  if (len < EOCD_LEN) throw problem(`zip archive is truncated (${len} bytes)`);

  // The EOCD is the last 22 bytes plus a comment of up to 65535 bytes; it must end the file exactly.
  let eocd = -1;
  for (let pos = len - EOCD_LEN; pos >= Math.max(0, len - EOCD_LEN - 0xffff); pos--) {
    if (view.getUint32(pos, true) === EOCD_SIG && pos + EOCD_LEN + view.getUint16(pos + 20, true) === len) {
      eocd = pos;
      break;
    }
  }
  if (eocd < 0) throw problem('zip archive has no end-of-central-directory record (truncated or not a zip)');
  const diskNo = view.getUint16(eocd + 4, true);
  const cdDisk = view.getUint16(eocd + 6, true);
  const entriesOnDisk = view.getUint16(eocd + 8, true);
  const entries = view.getUint16(eocd + 10, true);
  const cdSize = view.getUint32(eocd + 12, true);
  const cdOffset = view.getUint32(eocd + 16, true);
  if (entries === 0xffff || cdSize === 0xffffffff || cdOffset === 0xffffffff) {
    throw problem('zip64 archives are not supported (embedding files are small; re-save it)');
  }
  if (diskNo !== 0 || cdDisk !== 0 || entriesOnDisk !== entries) throw problem('multi-disk zip archives are not supported');
  if (entries > MAX_ENTRIES) throw problem(`zip archive has ${entries} entries (limit ${MAX_ENTRIES})`);
  const hasZip64Locator = eocd >= 20 && view.getUint32(eocd - 20, true) === ZIP64_LOCATOR_SIG;
  const cdLimit = hasZip64Locator ? eocd - 20 : eocd;
  if (cdOffset + cdSize > cdLimit) throw problem('zip central directory lies outside the archive (bad offsets)');

  const out = new Map<string, Uint8Array>();
  let p = cdOffset;
  const cdEnd = cdOffset + cdSize;
  for (let i = 0; i < entries; i++) {
    if (p + CENTRAL_LEN > cdEnd || view.getUint32(p, true) !== CENTRAL_SIG) {
      throw problem(`zip central directory entry ${i} is malformed`);
    }
    const flags = view.getUint16(p + 8, true);
    const method = view.getUint16(p + 10, true);
    const crc = view.getUint32(p + 16, true);
    const compSize = view.getUint32(p + 20, true);
    const size = view.getUint32(p + 24, true);
    const nameLen = view.getUint16(p + 28, true);
    const extraLen = view.getUint16(p + 30, true);
    const commentLen = view.getUint16(p + 32, true);
    const diskStart = view.getUint16(p + 34, true);
    const localOffset = view.getUint32(p + 42, true);
    const next = p + CENTRAL_LEN + nameLen + extraLen + commentLen;
    if (next > cdEnd) throw problem(`zip central directory entry ${i} runs past the directory`);
    if (nameLen === 0 || nameLen > MAX_NAME_LEN) throw problem(`zip entry ${i} has a bad name length ${nameLen}`);
    const nameBytes = buf.subarray(p + CENTRAL_LEN, p + CENTRAL_LEN + nameLen);
    const name = decodeName(nameBytes, (flags & 0x800) !== 0);
    if (flags & 0x1) throw problem(`zip entry "${name}" is encrypted`);
    if (method !== 0) {
      const what = METHOD_NAMES[method] ? `${METHOD_NAMES[method]}, method ${method}` : `method ${method}`;
      throw problem(
        `zip entry "${name}" is compressed (${what}); only stored (uncompressed) entries are supported, as torch.save writes them`,
      );
    }
    if (size === 0xffffffff || compSize === 0xffffffff || localOffset === 0xffffffff) {
      throw problem(`zip entry "${name}" needs zip64, which is not supported`);
    }
    if (diskStart !== 0) throw problem('multi-disk zip archives are not supported');
    if (compSize !== size) throw problem(`zip entry "${name}" is stored but its sizes differ (${compSize} vs ${size})`);
    if (out.has(name)) throw problem(`zip archive has two entries named "${name}"`);

    if (localOffset + LOCAL_LEN > cdOffset || view.getUint32(localOffset, true) !== LOCAL_SIG) {
      throw problem(`zip entry "${name}" has a bad local header offset ${localOffset}`);
    }
    const localMethod = view.getUint16(localOffset + 8, true);
    const localNameLen = view.getUint16(localOffset + 26, true);
    const localExtraLen = view.getUint16(localOffset + 28, true);
    if (localMethod !== method) throw problem(`zip entry "${name}" has inconsistent headers`);
    const dataStart = localOffset + LOCAL_LEN + localNameLen + localExtraLen;
    const localName = buf.subarray(localOffset + LOCAL_LEN, localOffset + LOCAL_LEN + localNameLen);
    if (!sameBytes(localName, nameBytes)) throw problem(`zip entry "${name}" has inconsistent headers`);
    if (dataStart + size > cdOffset) throw problem(`zip entry "${name}" data runs past the end of the entries (truncated?)`);
    const data = buf.subarray(dataStart, dataStart + size);
    // torch >= 2.6 can skip checksums (config.save.compute_crc32=False) and then writes 0.
    if (crc !== 0 && crc32(data) >>> 0 !== crc) throw problem(`zip entry "${name}" fails its CRC-32 check (corrupt)`);
    out.set(name, data);
    p = next;
  }
  return out;
}

function decodeName(bytes: Uint8Array, utf8: boolean): string {
  if (utf8) {
    try {
      return new TextDecoder('utf-8', { fatal: true }).decode(bytes);
    } catch {
      throw problem('zip entry name is not valid UTF-8');
    }
  }
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('latin1');
}

function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  if (a.byteLength !== b.byteLength) return false;
  for (let i = 0; i < a.byteLength; i++) if (a[i] !== b[i]) return false;
  return true;
}
