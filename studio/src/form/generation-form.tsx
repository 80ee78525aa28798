import { useEffect, useRef, useState } from 'preact/hooks';
import type { Scheduler } from '../../../src/client/generated/graphql';
import { ApiError } from '../api/api-error';
import type { GenerationRequest } from '../api/jobs-api';
import { InitImageField } from '../images/init-image-field';
import { MaskPainter, type MaskHandle } from '../images/mask-painter';
import type { CatalogueModel } from '../key/use-session';
import { EmbeddingPicker } from './embedding-picker';
import { describedBy, Field } from './field';
import {
  buildRequest,
  formFieldOf,
  isFieldName,
  MAX_SEED,
  MODES,
  SCHEDULERS,
  type FieldErrors,
  type FieldName,
  type FormValues,
  type Mode,
} from './form-values';
import { insertTriggerWord, removeTriggerWord } from './trigger-words';

export interface GenerationFormProps {
  values: FormValues;
  onChange: (update: (values: FormValues) => FormValues) => void;
  checkpoints: CatalogueModel[];
  embeddings: CatalogueModel[];
  /** Whether the catalogue has been loaded (it needs a key). */
  loaded: boolean;
  /** Sends the request; rejects with an ApiError the form shows next to the fields it names. */
  onSubmit: (request: GenerationRequest) => Promise<void>;
}

/** Every field of the contract, in the order a person fills them; refusals shown beside their field. */
export function GenerationForm({ values, onChange, checkpoints, embeddings, loaded, onSubmit }: GenerationFormProps) {
  const [errors, setErrors] = useState<FieldErrors>({});
  const [formError, setFormError] = useState<string | null>(null);
  const [sending, setSending] = useState(false);
  const mask = useRef<MaskHandle | null>(null);
  const form = useRef<HTMLFormElement>(null);

  /** Counts refusals: each one (and only that, not an error cleared while typing) moves the focus. */
  const [refusals, setRefusals] = useState(0);
  // After a refusal, the first refused field gets the focus (the error is read out with it).
  useEffect(() => {
    if (refusals > 0) form.current?.querySelector<HTMLElement>('[aria-invalid="true"]')?.focus();
  }, [refusals]);

  const set = <K extends keyof FormValues>(field: K, value: FormValues[K]) => {
    onChange((v) => ({ ...v, [field]: value }));
    if (isFieldName(field)) clearError(field);
  };
  const clearError = (field: FieldName) => setErrors((e) => (e[field] ? { ...e, [field]: undefined } : e));

  const submit = async () => {
    const built = buildRequest(values, values.mode === 'inpainting' ? ((await mask.current?.exportPng()) ?? null) : null);
    setFormError(null);
    if ('errors' in built) {
      setErrors(built.errors);
      setRefusals((n) => n + 1);
      return;
    }
    setErrors({});
    setSending(true);
    try {
      await onSubmit(built.request);
    } catch (err) {
      showRefusal(err);
    } finally {
      setSending(false);
    }
  };

  const showRefusal = (err: unknown) => {
    if (!(err instanceof ApiError)) return setFormError(String(err));
    const byField: FieldErrors = {};
    const elsewhere: string[] = [];
    for (const issue of err.issues) {
      const field = formFieldOf(issue.field);
      if (field && (field !== 'strength' || values.mode !== 'text2image')) byField[field] ??= issue.message;
      else elsewhere.push(`${issue.field || 'input'}: ${issue.message}`);
    }
    setErrors(byField);
    setRefusals((n) => n + 1);
    if (err.issues.length === 0) setFormError(err.message);
    else if (elsewhere.length > 0) setFormError(elsewhere.join('; '));
    else setFormError(`Not sent: ${Object.keys(byField).length === 1 ? 'a field needs' : 'some fields need'} a change (see above).`);
  };

  const number = (field: FieldName & keyof FormValues, label: string, attrs: Record<string, number | string>, hint?: string) => (
    <Field id={field} label={label} error={errors[field]} hint={hint}>
      <input
        {...describedBy(field, errors[field], hint)}
        type="number"
        inputMode={attrs.step === 1 ? 'numeric' : 'decimal'}
        {...attrs}
        value={values[field] as string}
        onInput={(e) => set(field, e.currentTarget.value)}
      />
    </Field>
  );

  const withImage = values.mode !== 'text2image';
  const selectedModel = checkpoints.find((m) => m.id === values.modelId);
  const modelHint =
    values.mode === 'inpainting' && selectedModel && !selectedModel.inpainting && checkpoints.some((m) => m.inpainting)
      ? 'An inpainting checkpoint usually blends the repainted part better.'
      : undefined;

  return (
    <form
      ref={form}
      class="generation-form"
      noValidate
      onSubmit={(e) => {
        e.preventDefault();
        void submit();
      }}
    >
      <div class="row">
        <Field id="mode" label="Mode">
          <select id="mode" value={values.mode} onChange={(e) => set('mode', e.currentTarget.value as Mode)}>
            {MODES.map((m) => (
              <option key={m.value} value={m.value}>
                {m.label}
              </option>
            ))}
          </select>
        </Field>
        <Field id="modelId" label="Model" error={errors.modelId} hint={modelHint}>
          <select
            {...describedBy('modelId', errors.modelId, modelHint)}
            value={values.modelId}
            onChange={(e) => set('modelId', e.currentTarget.value)}
          >
            {checkpoints.length === 0 && <option value="">{values.modelId || 'Load models with an API key'}</option>}
            {checkpoints.map((m) => (
              <option key={m.id} value={m.id}>
                {m.name}
                {m.inpainting ? ' — inpainting' : ''}
              </option>
            ))}
          </select>
        </Field>
      </div>

      {withImage && (
        <InitImageField
          value={values.initImage}
          error={errors.initImage}
          // Another image needs another mask; the same one (measured once loaded) keeps the mask to load.
          onChange={(image) =>
            onChange((v) => ({ ...v, initImage: image, maskToLoad: image?.src === v.initImage?.src ? v.maskToLoad : null }))
          }
          onUseSize={({ width, height }) => onChange((v) => ({ ...v, width: String(width), height: String(height) }))}
        />
      )}
      {values.mode === 'inpainting' && (
        <MaskPainter
          image={values.initImage}
          maskToLoad={values.maskToLoad}
          error={errors.maskImage}
          handle={mask}
          onEdit={() => clearError('maskImage')}
        />
      )}
      {withImage && number('strength', 'Strength', { min: 0, max: 1, step: 0.05 }, '0 keeps the init image, 1 ignores it.')}
      {values.mode === 'inpainting' && (
        <div class="row">
          {number(
            'maskBlur',
            'Mask blur',
            { min: 0, max: 64, step: 1 },
            'Pixels of soft edge where the repainted part meets the kept image; 0 is a hard edge.',
          )}
          <div class="checkbox">
            <input
              id="keepUnmasked"
              type="checkbox"
              checked={values.keepUnmasked}
              onChange={(e) => set('keepUnmasked', e.currentTarget.checked)}
            />
            <label for="keepUnmasked">Keep unmasked pixels</label>
            <span class="hint">Off: the whole image as the model drew it.</span>
          </div>
        </div>
      )}

      <Field id="prompt" label="Prompt" error={errors.prompt}>
        <textarea
          {...describedBy('prompt', errors.prompt)}
          rows={3}
          value={values.prompt}
          onInput={(e) => set('prompt', e.currentTarget.value)}
        />
      </Field>
      <Field id="negativePrompt" label="Negative prompt" error={errors.negativePrompt}>
        <textarea
          {...describedBy('negativePrompt', errors.negativePrompt)}
          rows={2}
          value={values.negativePrompt}
          onInput={(e) => set('negativePrompt', e.currentTarget.value)}
        />
      </Field>
      <EmbeddingPicker
        loaded={loaded}
        catalogue={embeddings}
        chosen={values.embeddings}
        error={errors.embeddings}
        onAdd={(embedding, target) => {
          const word = embedding.triggerWords[0];
          onChange((v) => ({
            ...v,
            embeddings: [...v.embeddings, embedding.id],
            [target]: word ? insertTriggerWord(v[target], word) : v[target],
          }));
          clearError('embeddings');
        }}
        onRemove={(id) => {
          const word = embeddings.find((m) => m.id === id)?.triggerWords[0];
          onChange((v) => ({
            ...v,
            embeddings: v.embeddings.filter((e) => e !== id),
            prompt: word ? removeTriggerWord(v.prompt, word) : v.prompt,
            negativePrompt: word ? removeTriggerWord(v.negativePrompt, word) : v.negativePrompt,
          }));
        }}
      />

      <fieldset class="settings">
        <legend>Settings</legend>
        <div class="grid">
          {number('numInferenceSteps', 'Steps', { min: 1, max: 100, step: 1 })}
          {number('guidanceScale', 'Guidance scale', { min: 1, max: 20, step: 0.5 })}
          {number('width', 'Width', { min: 64, max: 1024, step: 8 })}
          {number('height', 'Height', { min: 64, max: 1024, step: 8 })}
          {number('samples', 'Samples', { min: 1, max: 4, step: 1 })}
          <Field id="scheduler" label="Scheduler" error={errors.scheduler}>
            <select
              {...describedBy('scheduler', errors.scheduler)}
              value={values.scheduler}
              onChange={(e) => set('scheduler', e.currentTarget.value as Scheduler | '')}
            >
              <option value="">Server default</option>
              {Object.entries(SCHEDULERS).map(([value, label]) => (
                <option key={value} value={value}>
                  {label}
                </option>
              ))}
            </select>
          </Field>
        </div>
        <Field id="seed" label="Seed" error={errors.seed} hint="Empty: a new random seed for each job." class="seed">
          <div class="inline-controls">
            <input
              {...describedBy('seed', errors.seed, true)}
              type="number"
              inputMode="numeric"
              min={0}
              max={MAX_SEED}
              step={1}
              placeholder="Random"
              value={values.seed}
              onInput={(e) => set('seed', e.currentTarget.value)}
            />
            <button type="button" class="button subtle" onClick={() => set('seed', String(randomSeed()))}>
              Random
            </button>
            <button type="button" class="button subtle" disabled={values.seed === ''} onClick={() => set('seed', '')}>
              Clear
            </button>
          </div>
        </Field>
        <div class="checkbox">
          <input
            id="safetyChecker"
            type="checkbox"
            checked={values.safetyChecker}
            onChange={(e) => set('safetyChecker', e.currentTarget.checked)}
          />
          <label for="safetyChecker">Safety checker</label>
          <span class="hint">Black out images flagged as NSFW.</span>
        </div>
      </fieldset>

      <div class="actions">
        <button type="submit" class="button primary" disabled={sending}>
          Generate
        </button>
        {formError && (
          <p class="form-error" role="alert">
            {formError}
          </p>
        )}
      </div>
    </form>
  );
}

function randomSeed(): number {
  return crypto.getRandomValues(new Uint32Array(1))[0]! % (MAX_SEED + 1);
}
