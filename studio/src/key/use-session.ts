import { useCallback, useEffect, useState } from 'preact/hooks';
import { ModelsDocument, ViewerDocument, type ModelsQuery, type ViewerQuery } from '../../../src/client/generated/graphql';
import { ApiError } from '../api/api-error';
import { request } from '../api/graphql-http';

export type Viewer = ViewerQuery['viewer'];
export type CatalogueModel = ModelsQuery['models'][number];

/** Who the key is and what it may use: loaded once per key, again on retry. */
export interface Session {
  state: 'no-key' | 'loading' | 'ready' | 'failed';
  viewer: Viewer | null;
  checkpoints: CatalogueModel[];
  embeddings: CatalogueModel[];
  error: ApiError | null;
  retry(): void;
}

export function useSession(apiKey: string): Session {
  const [attempt, setAttempt] = useState(0);
  const [loaded, setLoaded] = useState<Omit<Session, 'retry'>>(initial(apiKey));

  useEffect(() => {
    setLoaded(initial(apiKey));
    if (!apiKey) return;
    let current = true;
    Promise.all([request(ViewerDocument, {}, apiKey), request(ModelsDocument, {}, apiKey)]).then(
      ([{ viewer }, { models }]) => {
        if (!current) return;
        setLoaded({
          state: 'ready',
          viewer,
          checkpoints: models.filter((m) => m.kind === 'CHECKPOINT'),
          embeddings: models.filter((m) => m.kind === 'EMBEDDING'),
          error: null,
        });
      },
      (err: unknown) => {
        if (!current) return;
        const error = err instanceof ApiError ? err : new ApiError('server', String(err));
        setLoaded({ state: 'failed', viewer: null, checkpoints: [], embeddings: [], error });
      },
    );
    return () => {
      current = false;
    };
  }, [apiKey, attempt]);

  const retry = useCallback(() => setAttempt((n) => n + 1), []);
  return { ...loaded, retry };
}

function initial(apiKey: string): Omit<Session, 'retry'> {
  return { state: apiKey ? 'loading' : 'no-key', viewer: null, checkpoints: [], embeddings: [], error: null };
}
