/** A textual-inversion embedding read from a file: `count` vectors of `width` floats, row-major. */
export interface Embedding {
  vectors: Float32Array;
  count: number;
  width: number;
  /** The token/name the file itself carries (A1111 `name`, diffusers key), or null. */
  tokenName: string | null;
  format: EmbeddingFormat;
}

export type EmbeddingFormat = 'safetensors' | 'safetensors-emb_params' | 'pt';

/** Refusal of an embedding file; the message always names the file. */
export class EmbeddingFileError extends Error {
  constructor(
    readonly fileName: string,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
    this.name = 'EmbeddingFileError';
  }
}

/** Thrown by the format readers (which do not know the file name); wrapped into EmbeddingFileError. */
export class EmbeddingFormatProblem extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'EmbeddingFormatProblem';
  }
}

export const problem = (message: string): EmbeddingFormatProblem => new EmbeddingFormatProblem(message);

/** Largest file we read at all (embeddings are a few KB; this is a generous ceiling). */
export const MAX_EMBEDDING_FILE_BYTES = 64 * 1024 * 1024;
/** More vectors than this cannot fit into one 77-token CLIP prompt window (75 usable tokens). */
export const MAX_EMBEDDING_VECTORS = 75;
/** Wider than any CLIP text encoder hidden size we could meet. */
export const MAX_EMBEDDING_WIDTH = 4096;

export type FloatDType = 'F32' | 'F16' | 'BF16';
