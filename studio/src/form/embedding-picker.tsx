import { useState } from 'preact/hooks';
import type { CatalogueModel } from '../key/use-session';
import { describedBy } from './field';

export type PromptTarget = 'prompt' | 'negativePrompt';

/**
 * Embeddings from the catalogue: picking one adds its id to the request and writes its trigger
 * word into the prompt or the negative prompt (negative embeddings belong in the latter).
 */
export function EmbeddingPicker({
  loaded,
  catalogue,
  chosen,
  error,
  onAdd,
  onRemove,
}: {
  loaded: boolean;
  catalogue: CatalogueModel[];
  chosen: string[];
  error: string | undefined;
  onAdd: (embedding: CatalogueModel, target: PromptTarget) => void;
  onRemove: (id: string) => void;
}) {
  const [target, setTarget] = useState<PromptTarget>('prompt');
  const available = catalogue.filter((m) => !chosen.includes(m.id));
  const hint = !loaded
    ? 'The catalogue loads with an API key.'
    : catalogue.length === 0
      ? 'None in the catalogue.'
      : 'Picking one writes its trigger word into the prompt you choose.';

  return (
    <div class={`field embeddings${error ? ' has-error' : ''}`}>
      <div class="embedding-controls">
        <div class="embedding-select">
          <label for="embeddings">Embeddings</label>
          <select
            {...describedBy('embeddings', error, hint)}
            value=""
            disabled={available.length === 0}
            onChange={(e) => {
              const picked = catalogue.find((m) => m.id === e.currentTarget.value);
              e.currentTarget.value = '';
              if (picked) onAdd(picked, target);
            }}
          >
            <option value="">{!loaded ? 'None loaded' : available.length ? 'Add an embedding…' : 'No more embeddings'}</option>
            {available.map((m) => (
              <option key={m.id} value={m.id}>
                {m.name}
                {m.triggerWords[0] && m.triggerWords[0] !== m.name ? ` (${m.triggerWords[0]})` : ''}
              </option>
            ))}
          </select>
        </div>
        <div class="embedding-target">
          <label for="embedding-target">Trigger word goes into</label>
          <select id="embedding-target" value={target} onChange={(e) => setTarget(e.currentTarget.value as PromptTarget)}>
            <option value="prompt">Prompt</option>
            <option value="negativePrompt">Negative prompt</option>
          </select>
        </div>
      </div>
      <p id="embeddings-hint" class="hint">
        {hint}
      </p>
      {chosen.length > 0 && (
        <ul class="chips" aria-label="Chosen embeddings">
          {chosen.map((id) => {
            const model = catalogue.find((m) => m.id === id || m.aliases.includes(id));
            const name = model?.name ?? id;
            return (
              <li key={id} class="chip">
                <span>{name}</span>
                <button type="button" class="chip-remove" aria-label={`Remove embedding ${name}`} onClick={() => onRemove(id)}>
                  ×
                </button>
              </li>
            );
          })}
        </ul>
      )}
      {error && (
        <p id="embeddings-error" class="field-error">
          {error}
        </p>
      )}
    </div>
  );
}
