import { isIP } from 'node:net';

/**
 * Which addresses an image URL may reach. Pure functions, so the rules can be tested without a
 * network: parse the operators' allowlist, classify an IP address, decide for a host + address.
 *
 * Image URLs come from API clients, so without these rules the server could be made to fetch
 * from its own loopback, the private network or a cloud metadata service (SSRF).
 */

export type AddressClass =
  'public' | 'unspecified' | 'loopback' | 'private' | 'shared' | 'link-local' | 'multicast' | 'broadcast' | 'reserved';

interface Cidr {
  family: 4 | 6;
  bytes: Uint8Array;
  prefix: number;
}

export interface AllowList {
  /** Lower-case hostnames without a trailing dot, compared exactly. */
  hostnames: ReadonlySet<string>;
  cidrs: readonly Cidr[];
}

/** Parses an IPv4 (dotted quad) or IPv6 address into bytes; null for anything else. */
export function parseIp(address: string): { family: 4 | 6; bytes: Uint8Array } | null {
  // dns.lookup may return link-local IPv6 with a zone ("fe80::1%eth0"); the zone does not change the class.
  const ip = address.replace(/%.*$/, '');
  const family = isIP(ip);
  if (family === 4) return { family: 4, bytes: Uint8Array.from(ip.split('.').map(Number)) };
  if (family !== 6) return null;
  let text = ip.toLowerCase();
  const tail: number[] = [];
  const dotted = /:(\d+\.\d+\.\d+\.\d+)$/.exec(text);
  if (dotted) {
    tail.push(...dotted[1]!.split('.').map(Number));
    text = text.slice(0, dotted.index + 1) + '0:0';
  }
  const [head, rest] = text.split('::') as [string, string | undefined];
  const groups = (s: string) => (s === '' ? [] : s.split(':'));
  const left = groups(head);
  const right = rest === undefined ? [] : groups(rest);
  const missing = 8 - left.length - right.length;
  const all = [...left, ...Array<string>(rest === undefined ? 0 : missing).fill('0'), ...right];
  if (all.length !== 8) return null;
  const bytes = new Uint8Array(16);
  all.forEach((g, i) => {
    const v = parseInt(g, 16);
    bytes[i * 2] = v >> 8;
    bytes[i * 2 + 1] = v & 0xff;
  });
  if (dotted) bytes.set(tail, 12);
  return { family: 6, bytes };
}

function cidr(text: string): Cidr {
  const [addr, bits] = text.split('/') as [string, string];
  const ip = parseIp(addr)!;
  return { ...ip, prefix: Number(bits) };
}

function inCidr(ip: { family: 4 | 6; bytes: Uint8Array }, range: Cidr): boolean {
  if (ip.family !== range.family) return false;
  let bits = range.prefix;
  for (let i = 0; bits > 0; i++, bits -= 8) {
    const mask = bits >= 8 ? 0xff : (0xff << (8 - bits)) & 0xff;
    if ((ip.bytes[i]! & mask) !== (range.bytes[i]! & mask)) return false;
  }
  return true;
}

// Ordered: the first matching range names the class (255.255.255.255 before 240/4, ::1 before ::/96).
const RANGES: [AddressClass, Cidr][] = (
  [
    ['unspecified', '0.0.0.0/8'],
    ['loopback', '127.0.0.0/8'],
    ['private', '10.0.0.0/8'],
    ['private', '172.16.0.0/12'],
    ['private', '192.168.0.0/16'],
    ['shared', '100.64.0.0/10'],
    ['link-local', '169.254.0.0/16'],
    ['multicast', '224.0.0.0/4'],
    ['broadcast', '255.255.255.255/32'],
    ['reserved', '240.0.0.0/4'],
    ['reserved', '192.0.0.0/24'], // IETF protocol assignments
    ['reserved', '192.0.2.0/24'], // documentation (TEST-NET-1..3)
    ['reserved', '198.51.100.0/24'],
    ['reserved', '203.0.113.0/24'],
    ['reserved', '198.18.0.0/15'], // benchmarking
    ['reserved', '192.88.99.0/24'], // old 6to4 relay anycast
    ['unspecified', '::/128'],
    ['loopback', '::1/128'],
    ['reserved', '::/96'], // deprecated IPv4-compatible IPv6
    ['private', 'fc00::/7'], // unique local
    ['private', 'fec0::/10'], // deprecated site-local
    ['private', '64:ff9b:1::/48'], // local-use NAT64
    ['link-local', 'fe80::/10'],
    ['multicast', 'ff00::/8'],
    ['reserved', '100::/64'], // discard-only
    ['reserved', '2001::/23'], // IETF protocol assignments, Teredo included (tunnels to any IPv4)
    ['reserved', '2001:db8::/32'], // documentation
    ['reserved', '3fff::/20'], // documentation
  ] as const
).map(([cls, text]) => [cls, cidr(text)]);

const MAPPED = cidr('::ffff:0:0/96');
const NAT64 = cidr('64:ff9b::/96');
const SIX_TO_FOUR = cidr('2002::/16');

/**
 * The IPv4 address an IPv6 address stands for, where it embeds one that it will reach: IPv4-mapped
 * (::ffff:a.b.c.d, what a dual-stack socket connects to), NAT64 (64:ff9b::/96) and 6to4 (2002::/16).
 */
function embeddedIpv4(ip: { family: 4 | 6; bytes: Uint8Array }): { family: 4; bytes: Uint8Array } | null {
  if (ip.family !== 6) return null;
  if (inCidr(ip, MAPPED) || inCidr(ip, NAT64)) return { family: 4, bytes: ip.bytes.slice(12, 16) };
  if (inCidr(ip, SIX_TO_FOUR)) return { family: 4, bytes: ip.bytes.slice(2, 6) };
  return null;
}

/** The class of an IP address; anything that is not an IP address is 'reserved' (never public). */
export function classifyAddress(address: string): AddressClass {
  const ip = parseIp(address);
  if (!ip) return 'reserved';
  // An embedded IPv4 address is judged as itself: ::ffff:127.0.0.1 is loopback, 2002:0a00:1:: private.
  return classifyBytes(embeddedIpv4(ip) ?? ip);
}

function classifyBytes(ip: { family: 4 | 6; bytes: Uint8Array }): AddressClass {
  for (const [cls, range] of RANGES) if (inCidr(ip, range)) return cls;
  return 'public';
}

/**
 * Parses allowlist entries: hostnames (exact, case-insensitive), single IP addresses, or CIDR ranges
 * ("10.0.0.0/8", "::1/128"). Throws on an entry that is none of these, so a typo in the
 * configuration fails at start-up instead of silently allowing nothing.
 */
export function parseAllowHosts(entries: readonly string[]): AllowList {
  const hostnames = new Set<string>();
  const cidrs: Cidr[] = [];
  for (const raw of entries) {
    const entry = raw.trim().toLowerCase();
    if (entry === '') continue;
    const [addrPart, bits, extra] = entry.split('/');
    const addr = addrPart!.replace(/^\[(.*)\]$/, '$1');
    const ip = parseIp(addr);
    if (bits !== undefined || ip) {
      const max = ip?.family === 4 ? 32 : 128;
      const prefix = bits === undefined ? max : Number(bits);
      if (!ip || addr.includes('%') || extra !== undefined || !/^\d{1,3}$/.test(bits ?? String(max)) || prefix > max) {
        throw new Error(`"${raw}" is not a valid CIDR range (e.g. 10.0.0.0/8 or fd00::/8)`);
      }
      cidrs.push({ ...ip, prefix });
    } else if (/^[a-z0-9_]([a-z0-9_-]*[a-z0-9_])?(\.[a-z0-9_]([a-z0-9_-]*[a-z0-9_])?)*\.?$/.test(entry)) {
      hostnames.add(entry.replace(/\.$/, ''));
    } else {
      throw new Error(`"${raw}" is neither a hostname nor a CIDR range`);
    }
  }
  return { hostnames, cidrs };
}

/** Whether a URL's hostname is on the allowlist by name (an IP literal never matches by name). */
export function isHostnameAllowed(hostname: string, allow: AllowList): boolean {
  return allow.hostnames.has(hostname.toLowerCase().replace(/\.$/, ''));
}

const DESCRIPTION: Record<Exclude<AddressClass, 'public'>, string> = {
  unspecified: 'an unspecified address',
  loopback: 'a loopback address',
  private: 'a private address',
  shared: 'a carrier-grade NAT (100.64.0.0/10) address',
  'link-local': 'a link-local address',
  multicast: 'a multicast address',
  broadcast: 'a broadcast address',
  reserved: 'a reserved address',
};

/**
 * Decides whether a connection to `address` (resolved from, or literally, `hostname`) may be made.
 * Returns null when allowed, else the reason in words. An allowlisted hostname or an address in an
 * allowlisted range bypasses the address rules; nothing else does.
 */
export function checkAddress(hostname: string, address: string, allow: AllowList): string | null {
  const cls = classifyAddress(address);
  if (cls === 'public') return null;
  if (isHostnameAllowed(hostname, allow)) return null;
  const ip = parseIp(address);
  const v4 = ip && (ip.family === 4 ? ip : embeddedIpv4(ip));
  // An IPv4 range also covers that address written as IPv6 (::ffff:10.1.2.3), as it reaches the same host.
  if (ip && allow.cidrs.some((r) => inCidr(ip, r) || (v4 !== null && inCidr(v4, r)))) return null;
  const host = hostname.replace(/^\[(.*)\]$/, '$1');
  const what = host === address.replace(/%.*$/, '') ? `is ${DESCRIPTION[cls]}` : `resolves to ${address}, ${DESCRIPTION[cls]}`;
  const metadata = v4 && v4.bytes.join('.') === '169.254.169.254' ? ' (the cloud metadata service)' : '';
  return `the host ${host} ${what}${metadata}; image URLs must point at public hosts (operators can allow it with IMAGE_FETCH_ALLOW_HOSTS)`;
}
