import { InputValidationError } from '../../generation/input.js';

/**
 * The contract's snake_case request fields ↔ the camelCase fields of the shared zod schemas.
 * Fields the contract does not name pass through unchanged (and the schema drops unknown ones).
 */
const CAMEL_BY_SNAKE: Record<string, string> = {
  model_id: 'modelId',
  negative_prompt: 'negativePrompt',
  num_inference_steps: 'numInferenceSteps',
  guidance_scale: 'guidanceScale',
  safety_checker: 'safetyChecker',
  init_image: 'initImage',
  mask_image: 'maskImage',
  // The contract's extensions (docs/api-contract.md, "Our extensions"): inpainting's blend.
  mask_blur: 'maskBlur',
  keep_unmasked: 'keepUnmasked',
  // Not in the contract: this server's extension, named as REST clients would write it.
  webhook: 'webhookUrl',
  webhook_url: 'webhookUrl',
};
const SNAKE_BY_CAMEL = Object.fromEntries(Object.entries(CAMEL_BY_SNAKE).map(([s, c]) => [c, s]));

export function fromRestRequestBody(body: unknown): Record<string, unknown> {
  if (!body || typeof body !== 'object' || Array.isArray(body)) {
    throw new InputValidationError([{ path: [], code: 'INVALID_TYPE', message: 'the request body must be a JSON object' }]);
  }
  // Only the contract's names: a camelCase twin (modelId beside model_id) would otherwise collide
  // with the mapped field and win or lose by key order. Own-property lookups only (no "__proto__").
  return Object.fromEntries(
    Object.entries(body)
      .filter(([k]) => !Object.hasOwn(SNAKE_BY_CAMEL, k))
      .map(([k, v]) => [Object.hasOwn(CAMEL_BY_SNAKE, k) ? CAMEL_BY_SNAKE[k]! : k, v]),
  );
}

/** A field path as REST clients know it: ['negativePrompt'] → "negative_prompt", ['embeddings', 1] → "embeddings.1". */
export function toRestFieldName(path: (string | number)[]): string {
  if (path.length === 0) return 'body';
  return path.map((p) => (typeof p === 'string' && Object.hasOwn(SNAKE_BY_CAMEL, p) ? SNAKE_BY_CAMEL[p]! : String(p))).join('.');
}
