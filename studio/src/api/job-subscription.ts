import { createClient, type Client } from 'graphql-ws';
import { WatchJobStateDocument, type WatchJobStateSubscription } from '../../../src/client/generated/graphql';
import { ApiError, apiErrorFrom, KEY_REFUSED } from './api-error';
import { GRAPHQL_PATH, queryText } from './graphql-http';

/** A job's state at one step, with the live preview when the engine made one. */
export type WatchedJobState = WatchJobStateSubscription['jobStatus'];

/** The live connection as a person should hear about it. */
export type ConnectionState = 'idle' | 'connecting' | 'connected' | 'reconnecting';

/** The server closes a socket whose key is wrong or revoked with this code; retrying cannot help. */
const KEY_REFUSED_CLOSE_CODE = 4403;

/**
 * One graphql-ws client per API key (the key travels in connection_init, never in the URL). Lazy:
 * it connects when a job is followed and closes when none is; after a network drop it reconnects
 * with back-off and the server answers each resubscription with the job's current state first.
 */
export function createSubscriptionClient(apiKey: string, onState: (state: ConnectionState) => void): Client {
  let everConnected = false;
  const protocol = location.protocol === 'https:' ? 'wss:' : 'ws:';
  return createClient({
    url: `${protocol}//${location.host}${GRAPHQL_PATH}`,
    connectionParams: { 'API-Key': apiKey },
    lazy: true,
    retryAttempts: 8,
    shouldRetry: (event) => !isCloseEvent(event) || event.code !== KEY_REFUSED_CLOSE_CODE,
    on: {
      connecting: () => onState(everConnected ? 'reconnecting' : 'connecting'),
      connected: () => {
        everConnected = true;
        onState('connected');
      },
      // 1000 is a normal close (no job followed any more); any other is a drop, retried.
      closed: (event) => onState(isCloseEvent(event) && event.code !== 1000 ? 'reconnecting' : 'idle'),
    },
  });
}

export interface JobObserver {
  next(job: WatchedJobState): void;
  error(error: ApiError): void;
  complete(): void;
}

/** Follows one job with WatchJobState (its state and live preview at each step) until it ends; returns the unsubscribe. */
export function followJob(client: Client, id: string, observer: JobObserver): () => void {
  return client.subscribe<WatchJobStateSubscription>(
    { query: queryText(WatchJobStateDocument), variables: { id } },
    {
      next: (result) => {
        if (result.errors?.length) observer.error(apiErrorFrom(result.errors));
        else if (result.data) observer.next(result.data.jobStatus);
      },
      error: (err) => observer.error(socketError(err)),
      complete: () => observer.complete(),
    },
  );
}

function socketError(err: unknown): ApiError {
  if (isCloseEvent(err) && err.code === KEY_REFUSED_CLOSE_CODE) return new ApiError('unauthenticated', KEY_REFUSED);
  if (Array.isArray(err)) return apiErrorFrom(err);
  return new ApiError(
    'network',
    'Lost the live connection to the server. Check your connection; the job goes on, and its result will be in the history.',
  );
}

function isCloseEvent(value: unknown): value is CloseEvent {
  return typeof value === 'object' && value !== null && 'code' in value && 'reason' in value;
}
