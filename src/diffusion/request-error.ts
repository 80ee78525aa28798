/**
 * A generation that cannot run as the request asks (an embedding that does not fit the
 * checkpoint, an image that cannot be decoded, a mode the checkpoint cannot do): the request's
 * fault, not the engine's, so the job fails with INVALID_INPUT and this message.
 */
export class InvalidRequestError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'InvalidRequestError';
  }
}
