import { useCallback, useEffect, useState } from 'preact/hooks';
import { ApiError } from './api/api-error';
import { fetchJob, type GenerationRequest, type JobWithSettings } from './api/jobs-api';
import { GenerationForm } from './form/generation-form';
import { DEFAULT_VALUES, defaultCheckpoint, findCheckpoint, valuesFromJob, type FormValues } from './form/form-values';
import { HistoryPanel } from './history/history-panel';
import { useJobHistory } from './history/use-job-history';
import { JobPanel } from './job/job-panel';
import { useCurrentJob } from './job/use-current-job';
import { loadApiKey, saveApiKey } from './key/api-key-storage';
import { KeyPanel } from './key/key-panel';
import { useSession } from './key/use-session';

/** The studio: the key at the top, then the form, the job being made, and the history. */
export function App() {
  const [apiKey, setApiKey] = useState(loadApiKey);
  const session = useSession(apiKey);
  const history = useJobHistory(apiKey);
  const { current, submit, cancel } = useCurrentJob(apiKey, history.refresh);
  const [values, setValues] = useState<FormValues>(DEFAULT_VALUES);
  const [announcement, setAnnouncement] = useState('');

  // Once the catalogue is known, the model is one of its checkpoints (an alias becomes its id).
  useEffect(() => {
    if (session.state !== 'ready') return;
    setValues((v) => {
      const id = (findCheckpoint(session.checkpoints, v.modelId) ?? defaultCheckpoint(session.checkpoints))?.id ?? v.modelId;
      return id === v.modelId ? v : { ...v, modelId: id };
    });
  }, [session.state, session.checkpoints]);

  const changeKey = (key: string) => {
    saveApiKey(key);
    setApiKey(key);
    if (key === apiKey) session.retry();
  };

  const generate = useCallback(
    async (generation: GenerationRequest) => {
      if (!apiKey) throw new ApiError('unauthenticated', 'Paste your API key at the top first.');
      await submit(generation);
    },
    [apiKey, submit],
  );

  const reuse = async (job: JobWithSettings) => {
    // The history leaves out init and mask images (they can be large): fetched now, when needed.
    let source: Parameters<typeof valuesFromJob>[0] = job;
    if (job.mode !== 'TEXT2IMAGE') {
      try {
        source = (await fetchJob(job.id, apiKey)) ?? job;
      } catch (err) {
        setAnnouncement(err instanceof ApiError ? err.message : String(err));
      }
    }
    setValues((v) => {
      const next = valuesFromJob(source, v);
      return { ...next, modelId: findCheckpoint(session.checkpoints, next.modelId)?.id ?? next.modelId };
    });
    setAnnouncement(`The settings of job ${job.id.slice(0, 8)} are in the form, seed ${job.seed} included.`);
    document.getElementById('create-heading')?.scrollIntoView({ behavior: 'smooth', block: 'start' });
  };

  return (
    <>
      <header class="topbar">
        <div class="brand">
          <span class="logo" aria-hidden="true" />
          <div>
            <h1>SD 1.5 Studio</h1>
            <p class="muted">Text to image, image to image and inpainting</p>
          </div>
        </div>
        <KeyPanel apiKey={apiKey} session={session} onKey={changeKey} />
      </header>
      <main class="layout">
        {/* The form and the job side by side: the job stays in sight (sticky) within this row only. */}
        <div class="workspace">
          <section class="card create-panel" aria-labelledby="create-heading">
            <h2 id="create-heading">Create</h2>
            <GenerationForm
              values={values}
              onChange={setValues}
              checkpoints={session.checkpoints}
              embeddings={session.embeddings}
              loaded={session.state === 'ready'}
              onSubmit={generate}
            />
          </section>
          <JobPanel
            current={current}
            onCancel={() => void cancel()}
            onUseSeed={(seed) => setValues((v) => ({ ...v, seed: String(seed) }))}
          />
        </div>
        <HistoryPanel history={history} live={current.job} onReuse={(job) => void reuse(job)} />
      </main>
      <footer class="footer muted">
        The API behind this page: <a href="/graphql">/graphql</a> (GraphiQL, with the schema's documentation).
      </footer>
      <div class="visually-hidden" role="status" aria-live="polite">
        {announcement}
      </div>
    </>
  );
}
