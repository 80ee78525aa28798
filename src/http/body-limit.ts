import type { IncomingMessage } from 'node:http';

export interface BodyRefusal {
  status: 411 | 413;
  code: 'LENGTH_REQUIRED' | 'PAYLOAD_TOO_LARGE';
  message: string;
}

/**
 * The request-size rule for GraphQL over HTTP, checked before yoga reads the body (yoga buffers
 * whatever it is sent, multipart uploads included). Bodies must declare their length: a chunked
 * body of unknown size is refused rather than buffered without bound.
 */
export function bodyTooLarge(req: IncomingMessage, limit: number): BodyRefusal | null {
  if (req.method !== 'POST') return null;
  const declared = req.headers['content-length'];
  if (declared === undefined) {
    if (req.headers['transfer-encoding'] === undefined) return null; // no body at all
    return { status: 411, code: 'LENGTH_REQUIRED', message: 'send the request body with a Content-Length header' };
  }
  const size = Number(declared);
  if (!Number.isFinite(size) || size > limit) {
    return { status: 413, code: 'PAYLOAD_TOO_LARGE', message: `the request body is larger than ${limit} bytes` };
  }
  return null;
}
