/**
 * An embedding works where its trigger word is written, so picking one writes the word into the
 * prompt (or the negative prompt), and removing it takes the word out again. Words are separated
 * by commas, as prompts usually are.
 */

const escape = (word: string) => word.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
const wordPattern = (word: string) => new RegExp(`(^|[\\s,(])${escape(word)}(?=$|[\\s,):])`, 'i');

export function hasTriggerWord(text: string, word: string): boolean {
  return wordPattern(word).test(text);
}

export function insertTriggerWord(text: string, word: string): string {
  if (hasTriggerWord(text, word)) return text;
  const trimmed = text.trimEnd();
  if (trimmed === '') return word;
  return trimmed.endsWith(',') ? `${trimmed} ${word}` : `${trimmed}, ${word}`;
}

/** Takes out the comma-separated part that is the word alone (as insertTriggerWord wrote it); other uses stay. */
export function removeTriggerWord(text: string, word: string): string {
  const parts = text.split(',');
  const kept = parts.filter((part) => part.trim().toLowerCase() !== word.toLowerCase());
  if (kept.length === parts.length) return text;
  return kept
    .map((part) => part.trim())
    .filter(Boolean)
    .join(', ');
}
