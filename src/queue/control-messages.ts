/**
 * What API processes tell workers, on one pub/sub channel that every worker subscribes to: a
 * job was canceled (the worker running it stops it between steps), or someone watches a job's
 * live preview (the worker running it asks its engine for previews for a while). A worker that
 * does not run the job ignores the message.
 */
export const CONTROL_CHANNEL = 'control';

export type ControlMessage = { type: 'cancel'; jobId: string } | { type: 'preview'; jobId: string };

export function encodeControl(message: ControlMessage): string {
  return JSON.stringify(message);
}

export function decodeControl(text: string): ControlMessage | null {
  try {
    const value = JSON.parse(text) as Partial<ControlMessage>;
    if ((value.type === 'cancel' || value.type === 'preview') && typeof value.jobId === 'string') {
      return { type: value.type, jobId: value.jobId };
    }
  } catch {
    // not ours
  }
  return null;
}
