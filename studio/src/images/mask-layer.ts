import { canvasToPng, loadImage } from './image-files';

/** How painted areas look over the init image (the canvas is shown half transparent). */
const PAINT = 'rgb(255, 64, 129)';

export interface Point {
  x: number;
  y: number;
}

/**
 * The mask being painted, on a canvas of exactly the init image's size: painted pixels are
 * opaque, the rest transparent. Exported as the API wants a mask: a PNG of the same size, white
 * where the image is to be repainted and black where it is kept.
 */
export class MaskLayer {
  constructor(private readonly canvas: HTMLCanvasElement) {}

  private get context(): CanvasRenderingContext2D {
    return this.canvas.getContext('2d', { willReadFrequently: true })!;
  }

  /** A new, empty mask of this size (setting a canvas's size clears it). */
  reset(width: number, height: number): void {
    this.canvas.width = width;
    this.canvas.height = height;
  }

  clear(): void {
    this.context.clearRect(0, 0, this.canvas.width, this.canvas.height);
  }

  /** Paints (or erases) a round-capped line from `from` to `to`; a dot when there is no `from`. */
  stroke(from: Point | null, to: Point, diameter: number, erase: boolean): void {
    const ctx = this.context;
    ctx.save();
    ctx.globalCompositeOperation = erase ? 'destination-out' : 'source-over';
    ctx.fillStyle = ctx.strokeStyle = PAINT;
    ctx.lineWidth = diameter;
    ctx.lineCap = ctx.lineJoin = 'round';
    if (from) {
      ctx.beginPath();
      ctx.moveTo(from.x, from.y);
      ctx.lineTo(to.x, to.y);
      ctx.stroke();
    } else {
      ctx.beginPath();
      ctx.arc(to.x, to.y, diameter / 2, 0, Math.PI * 2);
      ctx.fill();
    }
    ctx.restore();
  }

  isEmpty(): boolean {
    const { width, height } = this.canvas;
    if (width === 0 || height === 0) return true;
    const pixels = this.context.getImageData(0, 0, width, height).data;
    for (let i = 3; i < pixels.length; i += 4) if (pixels[i] !== 0) return false;
    return true;
  }

  /** Loads a mask image (white = repaint), scaled to this layer's size, as painted areas that can be edited further. */
  async load(src: string): Promise<void> {
    const image = await loadImage(src);
    const { width, height } = this.canvas;
    const scratch = document.createElement('canvas');
    scratch.width = width;
    scratch.height = height;
    const scratchContext = scratch.getContext('2d', { willReadFrequently: true })!;
    scratchContext.drawImage(image, 0, 0, width, height);
    const source = scratchContext.getImageData(0, 0, width, height);
    const painted = this.context.createImageData(width, height);
    const [r, g, b] = PAINT.match(/\d+/g)!.map(Number) as [number, number, number];
    for (let i = 0; i < source.data.length; i += 4) {
      const luminance = 0.299 * source.data[i]! + 0.587 * source.data[i + 1]! + 0.114 * source.data[i + 2]!;
      const alpha = (source.data[i + 3]! / 255) * luminance;
      painted.data[i] = r;
      painted.data[i + 1] = g;
      painted.data[i + 2] = b;
      painted.data[i + 3] = Math.round(alpha);
    }
    this.context.putImageData(painted, 0, 0);
  }

  /** The mask as a PNG file (white = repaint, black = keep), or null when nothing is painted. */
  async toPng(): Promise<File | null> {
    if (this.isEmpty()) return null;
    const { width, height } = this.canvas;
    const out = document.createElement('canvas');
    out.width = width;
    out.height = height;
    const ctx = out.getContext('2d')!;
    // The painted areas in white (their soft edges kept as grey), then black behind them.
    ctx.drawImage(this.canvas, 0, 0);
    ctx.globalCompositeOperation = 'source-in';
    ctx.fillStyle = '#fff';
    ctx.fillRect(0, 0, width, height);
    ctx.globalCompositeOperation = 'destination-over';
    ctx.fillStyle = '#000';
    ctx.fillRect(0, 0, width, height);
    return canvasToPng(out, 'mask.png');
  }
}
