import type { RefObject } from 'preact';
import { useEffect, useRef, useState } from 'preact/hooks';
import type { InitImage } from '../form/form-values';
import { FilePick } from './file-pick';
import { readAsDataUrl } from './image-files';
import { MaskLayer, type Point } from './mask-layer';

/** What the form asks of the painter when it sends an inpainting request. */
export interface MaskHandle {
  /** The mask as a PNG file (white = repaint), the init image's size; null if none is painted. */
  exportPng(): Promise<File | null>;
}

const UNREADABLE = 'This mask could not be read as an image.';

/**
 * The inpainting mask, painted with the mouse, a pen or a finger on a canvas over the init image
 * (brush size, eraser, clear), or uploaded (and then editable the same way).
 */
export function MaskPainter({
  image,
  maskToLoad,
  error,
  handle,
  onEdit,
}: {
  image: InitImage | null;
  maskToLoad: string | null;
  error: string | undefined;
  handle: RefObject<MaskHandle | null>;
  onEdit: () => void;
}) {
  const canvas = useRef<HTMLCanvasElement>(null);
  const layer = useRef<MaskLayer | null>(null);
  /** The last point of the stroke in progress; null while the pointer is up. */
  const stroke = useRef<Point | null>(null);
  const [brush, setBrush] = useState(32);
  const [erasing, setErasing] = useState(false);
  /** An uploaded mask for an init image the browser cannot show (so cannot paint over): sent as it is. */
  const [uploaded, setUploaded] = useState<File | null>(null);
  const [problem, setProblem] = useState<string | null>(null);
  const paintable = image !== null && image.width > 0;

  // A new init image gets a new, empty mask of its size; a reused job's mask is loaded into it.
  useEffect(() => {
    setUploaded(null);
    setProblem(null);
    if (!canvas.current || !image || !paintable) return;
    layer.current = new MaskLayer(canvas.current);
    layer.current.reset(image.width, image.height);
    if (maskToLoad) layer.current.load(maskToLoad).catch(() => setProblem(UNREADABLE));
  }, [image?.src, image?.width, image?.height, maskToLoad, paintable]);

  handle.current = { exportPng: async () => (paintable ? ((await layer.current?.toPng()) ?? null) : uploaded) };

  /** A pointer position in the mask's own pixels, and the brush's diameter in them. */
  const measure = (event: PointerEvent) => {
    const rect = canvas.current!.getBoundingClientRect();
    const scale = canvas.current!.width / rect.width;
    return { point: { x: (event.clientX - rect.left) * scale, y: (event.clientY - rect.top) * scale }, diameter: brush * scale };
  };

  const upload = (file: File) => {
    setProblem(null);
    if (!paintable) {
      setUploaded(file);
      onEdit();
      return;
    }
    readAsDataUrl(file)
      .then(async (dataUrl) => {
        await layer.current?.load(dataUrl);
        onEdit();
      })
      .catch(() => setProblem(UNREADABLE));
  };

  const message = error ?? problem ?? undefined;
  return (
    <div class={`field mask-field${message ? ' has-error' : ''}`}>
      <label for="mask">Mask</label>
      <p id="mask-hint" class="hint">
        Paint over what should be redrawn (white in the mask); the rest is kept. Or upload a mask image.
      </p>
      {paintable ? (
        <div class="mask-stage" style={{ aspectRatio: `${image.width} / ${image.height}` }}>
          <img src={image.src} alt="" draggable={false} />
          <canvas
            ref={canvas}
            role="img"
            aria-label="Mask painting area"
            class={erasing ? 'erasing' : ''}
            onPointerDown={(e) => {
              if (e.pointerType === 'mouse' && e.button !== 0) return;
              e.preventDefault();
              canvas.current!.setPointerCapture(e.pointerId);
              const { point, diameter } = measure(e);
              layer.current?.stroke(null, point, diameter, erasing);
              stroke.current = point;
              onEdit();
            }}
            onPointerMove={(e) => {
              if (!stroke.current) return;
              const { point, diameter } = measure(e);
              layer.current?.stroke(stroke.current, point, diameter, erasing);
              stroke.current = point;
            }}
            onPointerUp={() => (stroke.current = null)}
            onPointerCancel={() => (stroke.current = null)}
          />
        </div>
      ) : (
        <p class="placeholder">
          {image
            ? 'The browser cannot show this init image, so the mask cannot be painted over it: upload one of the same size.'
            : 'Choose an init image first: the mask is painted over it.'}
        </p>
      )}
      <div class="mask-tools">
        {paintable && (
          <>
            <div class="brush-size">
              <label for="brush-size">Brush size</label>
              <input
                id="brush-size"
                type="range"
                min={4}
                max={128}
                step={2}
                value={brush}
                onInput={(e) => setBrush(Number(e.currentTarget.value))}
              />
              <output for="brush-size">{brush} px</output>
            </div>
            <button type="button" class="button subtle" aria-pressed={erasing} onClick={() => setErasing(!erasing)}>
              Eraser
            </button>
            <button type="button" class="button subtle" onClick={() => layer.current?.clear()}>
              Clear
            </button>
          </>
        )}
        <FilePick
          id="mask"
          accept="image/png,image/jpeg,image/webp,image/*"
          compact
          describedBy={message ? 'mask-hint mask-error' : 'mask-hint'}
          invalid={!!error}
          onFile={upload}
        >
          <span>{uploaded ? 'Mask uploaded · replace' : 'Upload a mask'}</span>
        </FilePick>
      </div>
      {message && (
        <p id="mask-error" class="field-error">
          {message}
        </p>
      )}
    </div>
  );
}
