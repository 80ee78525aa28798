import type { ComponentChildren } from 'preact';
import { useRef, useState } from 'preact/hooks';

/**
 * A file input that looks like a drop area: the native input stays in the tab order (visually
 * hidden, its focus shown on the area), a click anywhere opens the picker, and a dropped file
 * is taken like a picked one.
 */
export function FilePick({
  id,
  accept,
  describedBy,
  invalid,
  onFile,
  compact = false,
  children,
}: {
  id: string;
  accept: string;
  describedBy?: string | undefined;
  invalid?: boolean;
  onFile: (file: File) => void;
  /** A small button-like area instead of a wide drop zone. */
  compact?: boolean;
  children: ComponentChildren;
}) {
  const input = useRef<HTMLInputElement>(null);
  const [dragging, setDragging] = useState(false);

  return (
    <div
      class={`drop-area${compact ? ' compact' : ''}${dragging ? ' dragging' : ''}`}
      onClick={(e) => {
        if (e.target !== input.current) input.current?.click();
      }}
      onDragOver={(e) => {
        e.preventDefault();
        setDragging(true);
      }}
      onDragLeave={() => setDragging(false)}
      onDrop={(e) => {
        e.preventDefault();
        setDragging(false);
        const file = e.dataTransfer?.files[0];
        if (file) onFile(file);
      }}
    >
      <input
        ref={input}
        id={id}
        type="file"
        accept={accept}
        class="visually-hidden"
        aria-describedby={describedBy}
        aria-invalid={invalid || undefined}
        onChange={(e) => {
          const file = e.currentTarget.files?.[0];
          // Cleared so that picking the same file again is a change too.
          e.currentTarget.value = '';
          if (file) onFile(file);
        }}
      />
      {children}
    </div>
  );
}
