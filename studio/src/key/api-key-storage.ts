/**
 * The API key lives in this browser's localStorage, never in a URL (URLs end up in logs, history
 * and Referer headers). Storage can be unavailable (private modes, blocked cookies): then the key
 * lasts as long as the page.
 */
const STORAGE_KEY = 'sd-studio.api-key';

export function loadApiKey(): string {
  try {
    return localStorage.getItem(STORAGE_KEY) ?? '';
  } catch {
    return '';
  }
}

export function saveApiKey(key: string): void {
  try {
    if (key) localStorage.setItem(STORAGE_KEY, key);
    else localStorage.removeItem(STORAGE_KEY);
  } catch {
    // Not persisted; the session still works.
  }
}
