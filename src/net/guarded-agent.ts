import { lookup as dnsLookup, type LookupAddress, type LookupOptions } from 'node:dns';
import { isIP } from 'node:net';
import { Agent } from 'undici';
import { checkAddress, type AllowList } from './address-policy.js';

/**
 * Outbound HTTP to URLs that API clients name (init images, webhooks): an undici Agent whose
 * DNS lookup resolves each name once, refuses it if any address is not public (unless
 * allowlisted), and hands the socket only the checked addresses, so a name that resolves
 * differently between a check and the connect (DNS rebinding) gains nothing. TLS still gets the
 * hostname from undici for SNI and the certificate check.
 */

/** Raised inside the connector; carries the policy's words out through undici's error. */
export class AddressRefused extends Error {}

export function createGuardedAgent(allow: AllowList, timeoutMs: number): Agent {
  const lookup = (
    hostname: string,
    options: LookupOptions,
    callback: (err: NodeJS.ErrnoException | null, address: string | LookupAddress[], family?: number) => void,
  ): void => {
    dnsLookup(hostname, { all: true, family: options.family ?? 0, hints: options.hints ?? 0 }, (err, addresses) => {
      if (err) return callback(err, []);
      if (addresses.length === 0) return callback(Object.assign(new Error(`getaddrinfo ENOTFOUND ${hostname}`), { code: 'ENOTFOUND' }), []);
      // Every address must pass: the socket may try any of them (happy eyeballs).
      for (const { address } of addresses) {
        const refusal = checkAddress(hostname, address, allow);
        if (refusal) return callback(new AddressRefused(refusal), []);
      }
      if (options.all) callback(null, addresses);
      else callback(null, addresses[0]!.address, addresses[0]!.family);
    });
  };
  return new Agent({ headersTimeout: timeoutMs, bodyTimeout: timeoutMs, connect: { timeout: timeoutMs, lookup } });
}

/**
 * What can be refused before connecting: the scheme, and for IP-literal hosts (which the socket
 * connects to without a lookup) the address. Returns the parsed URL, or why not.
 */
export function checkOutboundUrl(
  url: string,
  allow: AllowList,
): { url: URL } | { refusal: string; kind: 'invalid' | 'scheme' | 'address' } {
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    return { refusal: 'is not a valid URL', kind: 'invalid' };
  }
  if (parsed.protocol !== 'http:' && parsed.protocol !== 'https:') {
    return { refusal: `is a ${parsed.protocol} URL`, kind: 'scheme' };
  }
  const host = parsed.hostname.replace(/^\[(.*)\]$/, '$1');
  if (isIP(host)) {
    const refusal = checkAddress(parsed.hostname, host, allow);
    if (refusal) return { refusal, kind: 'address' };
  }
  return { url: parsed };
}

/** A refusal from checkOutboundUrl as a field message, or null. */
export function outboundRefusal(checked: ReturnType<typeof checkOutboundUrl>): string | null {
  if ('url' in checked) return null;
  return checked.kind === 'scheme' ? `${checked.refusal}; only http: and https: are accepted` : checked.refusal;
}

/** The first error of a type along an error's cause chain (undici wraps connector errors). */
export function findCause<T extends Error>(err: unknown, type: new (...args: never[]) => T): T | undefined {
  for (let e = err, depth = 0; e instanceof Error && depth < 5; e = e.cause, depth++) if (e instanceof type) return e;
  return undefined;
}
