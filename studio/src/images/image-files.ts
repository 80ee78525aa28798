import type { InitImage } from '../form/form-values';

/** The API takes images up to 1024 px a side; larger ones are scaled down here, before the upload. */
export const MAX_SIDE = 1024;
/** What the server decodes as sent; anything else is re-encoded as PNG in the browser. */
const SENT_AS_IS = new Set(['image/png', 'image/jpeg', 'image/webp']);

export function loadImage(src: string): Promise<HTMLImageElement> {
  const image = new Image();
  image.decoding = 'async';
  image.src = src;
  return image.decode().then(() => image);
}

/**
 * An init image from a file, uploaded as a file. PNG, JPEG and WebP within the size limit go as
 * they are; others, and larger ones, are drawn onto a canvas and sent as PNG.
 */
export async function initImageFromFile(file: File): Promise<InitImage> {
  if (!file.type.startsWith('image/')) throw new Error(`${file.name} is not an image.`);
  const dataUrl = await readAsDataUrl(file);
  let image: HTMLImageElement;
  try {
    image = await loadImage(dataUrl);
  } catch {
    throw new Error(`${file.name} could not be read as an image.`);
  }
  const { naturalWidth: width, naturalHeight: height } = image;
  if (SENT_AS_IS.has(file.type) && Math.max(width, height) <= MAX_SIDE) return { file, src: dataUrl, width, height, name: file.name };
  const scale = Math.min(1, MAX_SIDE / Math.max(width, height));
  const canvas = document.createElement('canvas');
  canvas.width = Math.max(1, Math.round(width * scale));
  canvas.height = Math.max(1, Math.round(height * scale));
  canvas.getContext('2d')!.drawImage(image, 0, 0, canvas.width, canvas.height);
  const png = await canvasToPng(canvas, `${file.name.replace(/\.[^.]*$/, '')}.png`);
  return { file: png, src: canvas.toDataURL('image/png'), width: canvas.width, height: canvas.height, name: file.name };
}

/** An init image by URL: sent as the URL (the server fetches it); its size, if the browser can load it. */
export async function initImageFromUrl(url: string): Promise<InitImage> {
  const image = await loadImage(url);
  return { file: null, src: url, width: image.naturalWidth, height: image.naturalHeight, name: url };
}

export function canvasToPng(canvas: HTMLCanvasElement, name: string): Promise<File> {
  return new Promise((resolve, reject) =>
    canvas.toBlob(
      (blob) => (blob ? resolve(new File([blob], name, { type: 'image/png' })) : reject(new Error('the canvas could not be encoded'))),
      'image/png',
    ),
  );
}

export function readAsDataUrl(file: Blob): Promise<string> {
  return new Promise((resolve, reject) => {
    const reader = new FileReader();
    reader.onload = () => resolve(reader.result as string);
    reader.onerror = () => reject(reader.error ?? new Error('the file could not be read'));
    reader.readAsDataURL(file);
  });
}

const MIN_SIDE = 64;

/**
 * The generation size closest to an image's: multiples of 8 from 64 to 1024, scaled down (or up,
 * for a tiny image) as a whole, so the aspect ratio is kept as well as rounding allows.
 */
export function generationSizeFor(width: number, height: number): { width: number; height: number } {
  const long = Math.max(width, height);
  const short = Math.min(width, height);
  const scale = short < MIN_SIDE ? MIN_SIDE / short : Math.min(1, MAX_SIDE / long);
  const fit = (side: number) => Math.min(MAX_SIDE, Math.max(MIN_SIDE, Math.round((side * scale) / 8) * 8));
  return { width: fit(width), height: fit(height) };
}
