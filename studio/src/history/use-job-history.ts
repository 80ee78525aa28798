import { useCallback, useEffect, useRef, useState } from 'preact/hooks';
import { ApiError } from '../api/api-error';
import { fetchJobPage, isFinished, type JobWithSettings } from '../api/jobs-api';

export const HISTORY_PAGE_SIZE = 8;
/** While a job shown is unfinished (made elsewhere: another tab, the API), the list is reloaded this often. */
const UNFINISHED_REFRESH_MS = 4000;
/** The most the jobs connection gives in one page. */
const MAX_PAGE = 100;

export interface JobHistory {
  jobs: JobWithSettings[];
  hasMore: boolean;
  loading: boolean;
  error: ApiError | null;
  loadMore(): void;
  /** Reloads what is shown (as many jobs as are loaded), e.g. after a job was created or finished. */
  refresh(): void;
}

/** The key's jobs, newest first, a page at a time through the jobs connection (first/after). */
export function useJobHistory(apiKey: string): JobHistory {
  const [jobs, setJobs] = useState<JobWithSettings[]>([]);
  const [cursor, setCursor] = useState<string | null>(null);
  const [hasMore, setHasMore] = useState(false);
  const [loading, setLoading] = useState(false);
  const [error, setError] = useState<ApiError | null>(null);
  /** Answers to an older request (another key, an older refresh) are dropped. */
  const generation = useRef(0);
  const shown = useRef(0);
  shown.current = jobs.length;

  const load = useCallback(
    (first: number, after: string | null, append: boolean) => {
      if (!apiKey) return;
      const mine = ++generation.current;
      setLoading(true);
      fetchJobPage(first, after, apiKey).then(
        (page) => {
          if (mine !== generation.current) return;
          const nodes = page.edges.map((e) => e.node);
          setJobs((old) => (append ? [...old, ...nodes] : nodes));
          setCursor(page.pageInfo.endCursor ?? null);
          setHasMore(page.pageInfo.hasNextPage);
          setError(null);
          setLoading(false);
        },
        (err: unknown) => {
          if (mine !== generation.current) return;
          setError(err instanceof ApiError ? err : new ApiError('server', String(err)));
          setLoading(false);
        },
      );
    },
    [apiKey],
  );

  useEffect(() => {
    setJobs([]);
    setCursor(null);
    setHasMore(false);
    setError(null);
    load(HISTORY_PAGE_SIZE, null, false);
  }, [load]);

  const loadMore = useCallback(() => load(HISTORY_PAGE_SIZE, cursor, true), [load, cursor]);
  const refresh = useCallback(() => load(Math.min(MAX_PAGE, Math.max(HISTORY_PAGE_SIZE, shown.current)), null, false), [load]);

  const unfinished = jobs.some((job) => !isFinished(job));
  useEffect(() => {
    if (!unfinished || loading) return;
    const timer = setTimeout(refresh, UNFINISHED_REFRESH_MS);
    return () => clearTimeout(timer);
  }, [unfinished, loading, refresh]);
  return { jobs, hasMore, loading, error, loadMore, refresh };
}
