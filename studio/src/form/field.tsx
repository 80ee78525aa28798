import type { ComponentChildren } from 'preact';

/**
 * A labelled control with its hint and its error below it. The control points at both with
 * aria-describedby, so the reason a field was refused is read out with the field, and tests (and
 * people) find the error next to the control it is about.
 */
export interface FieldProps {
  id: string;
  label: string;
  error?: string | undefined;
  hint?: ComponentChildren;
  class?: string;
  children: ComponentChildren;
}

export function Field({ id, label, error, hint, class: className, children }: FieldProps) {
  return (
    <div class={['field', className, error ? 'has-error' : ''].filter(Boolean).join(' ')}>
      <label for={id}>{label}</label>
      {children}
      {hint && (
        <p id={`${id}-hint`} class="hint">
          {hint}
        </p>
      )}
      {error && (
        <p id={`${id}-error`} class="field-error">
          {error}
        </p>
      )}
    </div>
  );
}

/** The attributes that tie a control to its Field's hint and error. */
export function describedBy(id: string, error: string | undefined, hint?: unknown) {
  const ids = [hint ? `${id}-hint` : '', error ? `${id}-error` : ''].filter(Boolean).join(' ');
  return { id, 'aria-invalid': error ? true : undefined, 'aria-describedby': ids || undefined };
}
