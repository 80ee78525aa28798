import { useEffect, useState } from 'preact/hooks';
import type { KeyScope } from '../../../src/client/generated/graphql';
import type { Session } from './use-session';

const SCOPE_ORDER: KeyScope[] = ['READ', 'GENERATE', 'ADMIN'];

/** Where the person pastes their key, and sees whose it is and what it may do. */
export function KeyPanel({ apiKey, session, onKey }: { apiKey: string; session: Session; onKey: (key: string) => void }) {
  const [draft, setDraft] = useState(apiKey);
  useEffect(() => setDraft(apiKey), [apiKey]);
  const failed = session.state === 'failed';

  return (
    <form
      class="key-panel"
      onSubmit={(event) => {
        event.preventDefault();
        onKey(draft.trim());
      }}
    >
      <label for="api-key">API key</label>
      <div class="inline-controls">
        <input
          id="api-key"
          type="password"
          autocomplete="off"
          spellcheck={false}
          placeholder="sdk_…"
          value={draft}
          onInput={(e) => setDraft(e.currentTarget.value)}
          aria-describedby="api-key-status"
          aria-invalid={failed && session.error?.kind === 'unauthenticated'}
        />
        <button type="submit" class="button">
          Use key
        </button>
        {apiKey && (
          <button type="button" class="button subtle" onClick={() => onKey('')}>
            Forget
          </button>
        )}
      </div>
      <div id="api-key-status" class="key-status" aria-live="polite">
        <KeyStatus session={session} />
      </div>
    </form>
  );
}

function KeyStatus({ session }: { session: Session }) {
  switch (session.state) {
    case 'no-key':
      return (
        <p class="hint">
          Paste a key to start. The server prints one on its first start; make more with <code>npm run keys -- create</code>.
        </p>
      );
    case 'loading':
      return <p class="hint">Checking the key…</p>;
    case 'failed':
      return (
        <p class="error">
          {session.error?.message}{' '}
          {session.error?.kind !== 'unauthenticated' && (
            <button type="button" class="link-button" onClick={session.retry}>
              Try again
            </button>
          )}
        </p>
      );
    case 'ready': {
      const viewer = session.viewer!;
      const scopes = SCOPE_ORDER.filter((s) => viewer.scopes.includes(s));
      return (
        <div class="viewer">
          <span>
            Key <strong>{viewer.name}</strong>
          </span>
          <ul class="scopes" aria-label="Scopes">
            {scopes.map((scope) => (
              <li key={scope} class="scope">
                {scope.toLowerCase()}
              </li>
            ))}
          </ul>
          {!viewer.scopes.includes('GENERATE') && (
            <p class="hint">This key can only read: generating needs a key with the generate scope.</p>
          )}
        </div>
      );
    }
  }
}
