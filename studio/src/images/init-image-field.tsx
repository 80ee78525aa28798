import { useEffect, useState } from 'preact/hooks';
import type { InitImage } from '../form/form-values';
import { FilePick } from './file-pick';
import { generationSizeFor, initImageFromFile, initImageFromUrl } from './image-files';

/** The init image of image2image and inpainting: a file (picked or dropped) or a URL. */
export function InitImageField({
  value,
  error,
  onChange,
  onUseSize,
}: {
  value: InitImage | null;
  error: string | undefined;
  onChange: (image: InitImage | null) => void;
  onUseSize: (size: { width: number; height: number }) => void;
}) {
  const [problem, setProblem] = useState<string | null>(null);
  const fromUrl = value && !value.src.startsWith('data:') ? value.src : '';
  const [urlDraft, setUrlDraft] = useState(fromUrl);
  useEffect(() => setUrlDraft(fromUrl), [fromUrl]);

  // An image put in by "Use these settings again" comes without its size: measure it.
  useEffect(() => {
    if (!value || value.width > 0) return;
    let current = true;
    initImageFromUrl(value.src).then(
      (measured) => current && onChange({ ...value, width: measured.width, height: measured.height }),
      () => current && setProblem('The browser could not load this image; the server may still be able to fetch it.'),
    );
    return () => {
      current = false;
    };
  }, [value]);

  const takeFile = (file: File) => {
    setProblem(null);
    initImageFromFile(file).then(onChange, (err: Error) => setProblem(err.message));
  };
  const takeUrl = (url: string) => {
    setProblem(null);
    if (url === fromUrl) return;
    if (!url) return onChange(null);
    // Sent as given even when the browser cannot show it (the server fetches it, not the browser).
    initImageFromUrl(url).then(onChange, () => {
      onChange({ file: null, src: url, width: 0, height: 0, name: url });
      setProblem('The browser could not load this image; the server may still be able to fetch it.');
    });
  };

  const message = error ?? problem ?? undefined;
  const described = ['init-image-hint', message ? 'init-image-error' : ''].filter(Boolean).join(' ');
  const suggested = value && value.width > 0 ? generationSizeFor(value.width, value.height) : null;

  return (
    <div class={`field init-image${message ? ' has-error' : ''}`}>
      <label for="init-image">Init image</label>
      <FilePick
        id="init-image"
        accept="image/png,image/jpeg,image/webp,image/*"
        describedBy={described}
        invalid={!!error}
        onFile={takeFile}
      >
        {value ? (
          <div class="picked-image">
            {value.width > 0 ? <img src={value.src} alt="" /> : <span class="picked-image-unknown" aria-hidden="true" />}
            <span>
              <strong>{value.name.length > 60 ? `${value.name.slice(0, 57)}…` : value.name}</strong>
              {value.width > 0 && (
                <span class="muted">
                  {' '}
                  {value.width}×{value.height}
                </span>
              )}
              <span class="muted"> · click or drop to replace</span>
            </span>
          </div>
        ) : (
          <span>
            <strong>Drop an image here</strong> or click to choose a file
          </span>
        )}
      </FilePick>
      <p id="init-image-hint" class="hint">
        PNG, JPEG or WebP; larger than 1024 px is scaled down. Another shape than the width and height below is cropped (centred).
        {value && (
          <>
            {' '}
            <button type="button" class="link-button" onClick={() => onChange(null)}>
              Remove
            </button>
          </>
        )}
        {suggested && (
          <>
            {' · '}
            <button type="button" class="link-button" onClick={() => onUseSize(suggested)}>
              Size from the image ({suggested.width}×{suggested.height})
            </button>
          </>
        )}
      </p>
      {message && (
        <p id="init-image-error" class="field-error">
          {message}
        </p>
      )}
      <label for="init-image-url" class="secondary-label">
        Init image URL
      </label>
      <input
        id="init-image-url"
        type="url"
        inputMode="url"
        placeholder="https://…"
        value={urlDraft}
        onInput={(e) => setUrlDraft(e.currentTarget.value)}
        onChange={(e) => takeUrl(e.currentTarget.value.trim())}
        onKeyDown={(e) => {
          // Enter takes the URL; it must not submit the whole form.
          if (e.key === 'Enter') {
            e.preventDefault();
            takeUrl(e.currentTarget.value.trim());
          }
        }}
      />
    </div>
  );
}
