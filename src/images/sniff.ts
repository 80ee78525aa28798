/** Recognises image formats from their first bytes; content types sent by peers are not trusted. */
export function sniffImageType(data: Uint8Array): 'image/png' | 'image/jpeg' | 'image/webp' | null {
  const starts = (bytes: number[], offset = 0) => bytes.every((b, i) => data[offset + i] === b);
  if (starts([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a])) return 'image/png';
  if (starts([0xff, 0xd8, 0xff])) return 'image/jpeg';
  if (starts([0x52, 0x49, 0x46, 0x46]) && starts([0x57, 0x45, 0x42, 0x50], 8)) return 'image/webp';
  return null;
}

/** Formats that are images but not accepted, named so a refusal can say what was sent. */
export function otherImageType(data: Uint8Array): string | null {
  const text = Buffer.from(data.subarray(0, 12)).toString('latin1');
  if (text.startsWith('GIF87a') || text.startsWith('GIF89a')) return 'GIF';
  if (text.startsWith('BM')) return 'BMP';
  if (text.startsWith('II*\0') || text.startsWith('MM\0*')) return 'TIFF';
  if (text.slice(4, 12) === 'ftypavif' || text.slice(4, 12) === 'ftypheic') return text.slice(8, 12) === 'avif' ? 'AVIF' : 'HEIC';
  if (text.startsWith('<svg') || text.startsWith('<?xml')) return 'SVG';
  return null;
}

export const EXTENSION_BY_TYPE: Record<string, string> = {
  'image/png': 'png',
  'image/jpeg': 'jpg',
  'image/webp': 'webp',
};
