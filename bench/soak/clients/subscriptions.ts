import type WebSocketType from 'ws';
import { rand, randInt } from '../inputs.js';
import { TERMINAL, type JobRec } from '../ledger.js';
import type { LoadContext } from '../load.js';

/**
 * Three ways a client follows a job over graphql-ws. The two that run to the end record the
 * final state they saw; the verification compares it with the stored one.
 */

/** A subscription on the key's shared connection that runs to the end: it must complete with the job's terminal state. */
export async function subscribeToEnd({ ws, ledger, control }: LoadContext, k: number, rec: JobRec) {
  const entry = ws.shared(k);
  entry.active++;
  ledger.count('subscriptions to the end: started');
  const sub = ws.subscribe(entry.client, rec, () => {});
  const end = await control.untilDrainDeadline(sub.done);
  entry.active--;
  if (!end) return (sub.dispose(), ledger.count('subscriptions to the end: still open at the deadline'));
  if (end.how === 'error') return (ws.subscriptionError(end.err), ledger.count('subscriptions to the end: ended by an error'));
  if (!end.last || !TERMINAL.has(end.last.status))
    return ledger.problem('subscription completed before a terminal state', `${rec.id} ${end.last?.status}`);
  rec.subscriptionFinal = end.last.status;
  ledger.count('subscriptions to the end: completed with the final state');
}

/** A client that goes away mid-stream without a close frame (its TCP socket destroyed). */
export async function subscribeAndDrop({ ws, ledger, control }: LoadContext, k: number, rec: JobRec) {
  let socket: WebSocketType | null = null;
  let terminated = false;
  const client = ws.client(k, { retry: false, onSocket: (s) => (socket = s), ourTerminate: () => terminated });
  ledger.count('subscriptions dropped mid-stream: started');
  const afterValues = randInt(1, 3);
  const drop = () => {
    if (terminated || !socket) return;
    terminated = true;
    socket.terminate();
  };
  const sub = ws.subscribe(client, rec, (_job, n) => n >= afterValues && drop());
  const timer = setTimeout(drop, rand(50, 1_500));
  const end = await control.untilDrainDeadline(sub.done);
  clearTimeout(timer);
  if (end?.how === 'complete') ledger.count('subscriptions dropped mid-stream: job ended first');
  else if (end?.how === 'error' && !terminated) ws.subscriptionError(end.err);
  else if (end && terminated) ledger.count('subscriptions dropped mid-stream: dropped');
  await ws.release(client);
}

/** A client whose socket is destroyed after the first value; it reconnects, resubscribes, and must still see the end. */
export async function subscribeAndReconnect({ ws, ledger, control }: LoadContext, k: number, rec: JobRec) {
  let socket: WebSocketType | null = null;
  let terminated = false;
  let reconnected = false;
  const client = ws.client(k, {
    retry: true,
    onSocket: (s, wasRetry) => {
      socket = s;
      if (wasRetry) reconnected = true;
    },
    ourTerminate: () => terminated,
  });
  ledger.count('subscriptions reconnecting: started');
  const sub = ws.subscribe(client, rec, (job) => {
    if (!terminated && !TERMINAL.has(job.status) && socket) {
      terminated = true;
      socket.terminate();
    }
  });
  const end = await control.untilDrainDeadline(sub.done);
  if (!end) {
    sub.dispose();
    ledger.count('subscriptions reconnecting: still open at the deadline');
  } else if (end.how === 'error') {
    ws.subscriptionError(end.err);
    ledger.count('subscriptions reconnecting: ended by an error');
  } else if (!end.last || !TERMINAL.has(end.last.status))
    ledger.problem('subscription completed before a terminal state (after reconnecting)', rec.id);
  else {
    rec.subscriptionFinal = end.last.status;
    ledger.count(reconnected ? 'subscriptions reconnecting: reconnected, completed' : 'subscriptions reconnecting: job ended first');
  }
  await ws.release(client);
}
