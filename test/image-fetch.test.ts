import { lookup } from 'node:dns/promises';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { hostname } from 'node:os';
import { deflateSync } from 'node:zlib';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { checkAddress, classifyAddress, parseAllowHosts, type AddressClass } from '../src/net/address-policy.js';
import { ImageFetcher, ImageFetchError, MAX_IMAGE_BYTES, type ImageFetcherOptions } from '../src/images/fetch-image.js';

const PUBLIC_ONLY = '; image URLs must point at public hosts (operators can allow it with IMAGE_FETCH_ALLOW_HOSTS)';

/** A PNG whose IHDR declares width x height, with one tiny IDAT: small on the wire, huge if decoded. */
function pngDeclaring(width: number, height: number): Buffer {
  const crcTable = Array.from({ length: 256 }, (_, n) => {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    return c >>> 0;
  });
  const crc = (buf: Buffer) => {
    let c = 0xffffffff;
    for (const b of buf) c = crcTable[(c ^ b) & 0xff]! ^ (c >>> 8);
    return (c ^ 0xffffffff) >>> 0;
  };
  const chunk = (type: string, data: Buffer) => {
    const body = Buffer.concat([Buffer.from(type, 'ascii'), data]);
    const out = Buffer.alloc(body.length + 8);
    out.writeUInt32BE(data.length, 0);
    body.copy(out, 4);
    out.writeUInt32BE(crc(body), body.length + 4);
    return out;
  };
  const ihdr = Buffer.alloc(13);
  ihdr.writeUInt32BE(width, 0);
  ihdr.writeUInt32BE(height, 4);
  ihdr.set([8, 2, 0, 0, 0], 8); // 8-bit RGB
  return Buffer.concat([
    Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]),
    chunk('IHDR', ihdr),
    chunk('IDAT', deflateSync(Buffer.alloc(1024))),
    chunk('IEND', Buffer.alloc(0)),
  ]);
}

const dataUrl = (type: string, bytes: Buffer) => `data:${type};base64,${bytes.toString('base64')}`;

async function refusal(promise: Promise<unknown>): Promise<ImageFetchError> {
  const err = await promise.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(ImageFetchError);
  return err as ImageFetchError;
}

describe('address policy', () => {
  const table: [string, AddressClass][] = [
    ['8.8.8.8', 'public'],
    ['1.1.1.1', 'public'],
    ['172.32.0.1', 'public'],
    ['100.128.0.1', 'public'],
    ['2606:4700:4700::1111', 'public'],
    ['::ffff:8.8.8.8', 'public'],
    ['2002:808:808::1', 'public'], // 6to4 of 8.8.8.8
    ['127.0.0.1', 'loopback'],
    ['127.255.255.254', 'loopback'],
    ['::1', 'loopback'],
    ['0:0:0:0:0:0:0:1', 'loopback'],
    ['::ffff:127.0.0.1', 'loopback'],
    ['::ffff:7f00:1', 'loopback'],
    ['64:ff9b::7f00:1', 'loopback'], // NAT64 of 127.0.0.1
    ['2002:7f00:1::', 'loopback'], // 6to4 of 127.0.0.1
    ['10.0.0.1', 'private'],
    ['172.16.0.1', 'private'],
    ['172.31.255.255', 'private'],
    ['192.168.1.1', 'private'],
    ['::ffff:10.0.0.1', 'private'],
    ['::ffff:192.168.0.1', 'private'],
    ['fc00::1', 'private'],
    ['fd12:3456::1', 'private'],
    ['fec0::1', 'private'],
    ['100.64.0.1', 'shared'],
    ['100.127.255.255', 'shared'],
    ['169.254.169.254', 'link-local'],
    ['::ffff:169.254.169.254', 'link-local'],
    ['169.254.0.1', 'link-local'],
    ['fe80::1', 'link-local'],
    ['fe80::1%eth0', 'link-local'],
    ['224.0.0.1', 'multicast'],
    ['239.255.255.250', 'multicast'],
    ['ff02::1', 'multicast'],
    ['0.0.0.0', 'unspecified'],
    ['0.1.2.3', 'unspecified'],
    ['::', 'unspecified'],
    ['::ffff:0.0.0.0', 'unspecified'],
    ['255.255.255.255', 'broadcast'],
    ['240.0.0.1', 'reserved'],
    ['192.0.2.1', 'reserved'],
    ['198.18.0.1', 'reserved'],
    ['2001:db8::1', 'reserved'],
    ['2001:0:4136:e378::1', 'reserved'], // Teredo
    ['::1.2.3.4', 'reserved'], // IPv4-compatible
    ['not-an-ip', 'reserved'],
  ];
  it.each(table)('classifies %s as %s', (address, expected) => {
    expect(classifyAddress(address)).toBe(expected);
  });

  it('parses allowlists of hostnames, addresses and CIDR ranges, and refuses malformed entries', () => {
    const allow = parseAllowHosts([' Images.Internal ', 'localhost.', '10.0.0.0/8', '127.0.0.1', '::1/128', '[fd00::]/8', '']);
    expect([...allow.hostnames]).toEqual(['images.internal', 'localhost']);
    expect(allow.cidrs.map((c) => `${c.family}/${c.prefix}`)).toEqual(['4/8', '4/32', '6/128', '6/8']);
    for (const bad of ['10.0.0.0/33', '10.0.0/8', '::1/129', '10.0.0.0/8/1', '10.0.0.0/', 'bad host!', 'http://x/']) {
      expect(() => parseAllowHosts([bad]), bad).toThrow(bad);
    }
  });

  it('refuses non-public addresses with a message naming host and class, and lets the allowlist through', () => {
    const none = parseAllowHosts([]);
    expect(checkAddress('8.8.8.8', '8.8.8.8', none)).toBeNull();
    expect(checkAddress('example.com', '2606:4700:4700::1111', none)).toBeNull();
    expect(checkAddress('127.0.0.1', '127.0.0.1', none)).toBe(`the host 127.0.0.1 is a loopback address${PUBLIC_ONLY}`);
    expect(checkAddress('[::1]', '::1', none)).toBe(`the host ::1 is a loopback address${PUBLIC_ONLY}`);
    expect(checkAddress('internal.example', '10.0.0.1', none)).toBe(
      `the host internal.example resolves to 10.0.0.1, a private address${PUBLIC_ONLY}`,
    );
    expect(checkAddress('169.254.169.254', '169.254.169.254', none)).toMatch(/is a link-local address \(the cloud metadata service\)/);
    expect(checkAddress('x.example', '100.64.0.1', none)).toMatch(/carrier-grade NAT/);

    const allow = parseAllowHosts(['Images.Internal', '10.0.0.0/8', '::1/128']);
    expect(checkAddress('images.internal', '192.168.0.7', allow)).toBeNull(); // by name, whatever it resolves to
    expect(checkAddress('IMAGES.INTERNAL.', '192.168.0.7', allow)).toBeNull();
    expect(checkAddress('other.internal', '192.168.0.7', allow)).toMatch(/private address/);
    expect(checkAddress('other.internal', '10.9.8.7', allow)).toBeNull(); // by range
    expect(checkAddress('other.internal', '::ffff:10.9.8.7', allow)).toBeNull(); // same host written as IPv6
    expect(checkAddress('::1', '::1', allow)).toBeNull();
    expect(checkAddress('127.0.0.1', '127.0.0.1', allow)).toMatch(/loopback/); // ::1/128 is not 127/8
    expect(checkAddress('sub.images.internal', '10.0.0.1', parseAllowHosts(['images.internal']))).toMatch(/private/); // exact names only
  });
});

describe('ImageFetcher', () => {
  let server: Server;
  let port: number;
  let png: Buffer;
  let bomb: Buffer;
  const hits = new Map<string, number>();
  const fetchers: ImageFetcher[] = [];
  const fetcher = (options: ImageFetcherOptions = {}) => {
    const f = new ImageFetcher(options);
    fetchers.push(f);
    return f;
  };
  const at = (path: string, host = '127.0.0.1') => `http://${host}:${port}${path}`;

  beforeAll(async () => {
    png = await sharp({ create: { width: 16, height: 8, channels: 3, background: '#3a6' } })
      .png()
      .toBuffer();
    bomb = await sharp({ create: { width: 5000, height: 5000, channels: 3, background: '#000' } })
      .png()
      .toBuffer();
    server = createServer((req, res) => {
      const url = new URL(req.url!, 'http://x');
      hits.set(url.pathname, (hits.get(url.pathname) ?? 0) + 1);
      res.on('error', () => {});
      switch (url.pathname) {
        case '/ok.png':
          return res.writeHead(200, { 'content-type': 'image/png' }).end(png);
        case '/text.png':
          return res.writeHead(200, { 'content-type': 'image/png' }).end('this is not an image');
        case '/garbage.png':
          return res.writeHead(200, { 'content-type': 'image/png' }).end(Buffer.concat([png.subarray(0, 8), Buffer.alloc(200, 7)]));
        case '/bomb.png':
          return res.writeHead(200, { 'content-type': 'image/png' }).end(bomb);
        case '/huge-header.png':
          return res.writeHead(200, { 'content-type': 'image/png' }).end(pngDeclaring(20000, 20000));
        case '/declared-big':
          // Claims 30 MB but sends a little: the fetcher must refuse on the header alone.
          res.writeHead(200, { 'content-type': 'image/png', 'content-length': '30000000' });
          return void res.write(png);
        case '/chunked-big': {
          res.writeHead(200, { 'content-type': 'image/png' }); // no length: chunked
          let sent = 0;
          const more = () => {
            while (sent < 400_000 && !res.destroyed) {
              sent += 16_384;
              if (!res.write(Buffer.alloc(16_384, 1))) return void res.once('drain', more);
            }
            res.end();
          };
          return more();
        }
        case '/slow-body':
          res.writeHead(200, { 'content-type': 'image/png' });
          res.write(png.subarray(0, 10));
          return; // the rest never comes
        case '/no-answer':
          return; // not even headers
        case '/redirect':
          return res.writeHead(302, { location: url.searchParams.get('to')! }).end();
        case '/loop':
          return res.writeHead(301, { location: '/loop' }).end();
        case '/chain': {
          const n = Number(url.searchParams.get('n'));
          return res.writeHead(307, { location: n > 0 ? `/chain?n=${n - 1}` : '/ok.png' }).end();
        }
        default:
          return res.writeHead(404).end();
      }
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    port = (server.address() as AddressInfo).port;
  });
  afterAll(async () => {
    await Promise.all(fetchers.map((f) => f.close()));
    server.closeAllConnections();
    await new Promise((r) => server.close(r));
  });

  describe('addresses', () => {
    it('refuses a loopback server by default, naming the field', async () => {
      const err = await refusal(fetcher().fetch(at('/ok.png'), 'initImage'));
      expect(err.message).toBe(`initImage: the host 127.0.0.1 is a loopback address${PUBLIC_ONLY}`);
      expect(err.field).toBe('initImage');
      expect(hits.get('/ok.png')).toBeUndefined(); // refused before connecting
    });

    it('refuses a name that resolves to a loopback address (checked after DNS resolution)', async () => {
      const err = await refusal(fetcher().fetch(at('/ok.png', 'localhost'), 'maskImage'));
      expect(err.message).toBe(`maskImage: the host localhost resolves to 127.0.0.1, a loopback address${PUBLIC_ONLY}`);
    });

    it('refuses literal non-public hosts in every spelling WHATWG URL accepts, without connecting', async () => {
      const f = fetcher({ allowHosts: ['127.0.0.1'] }); // allowing 127.0.0.1 by address allows no other
      const cases: [string, RegExp][] = [
        [`http://[::1]:${port}/ok.png`, /the host ::1 is a loopback address/],
        [`http://[::ffff:127.0.0.2]:${port}/ok.png`, /the host ::ffff:7f00:2 is a loopback address/],
        [`http://2130706434:${port}/ok.png`, /the host 127.0.0.2 is a loopback address/],
        [`http://0x7f.0.0.3:${port}/ok.png`, /the host 127.0.0.3 is a loopback address/],
        ['http://169.254.169.254/latest/meta-data/', /the host 169.254.169.254 is a link-local address \(the cloud metadata service\)/],
        ['http://[fe80::1]/', /is a link-local address/],
        ['http://0.0.0.0/', /is an unspecified address/],
        ['http://10.0.0.1/', /is a private address/],
        ['https://192.168.1.1/', /is a private address/],
        ['http://100.64.0.1/', /carrier-grade NAT/],
        ['http://224.0.0.1/', /is a multicast address/],
        ['http://255.255.255.255/', /is a broadcast address/],
        ['http://[fd00::1]/', /is a private address/],
        ['http://[::ffff:10.0.0.1]/', /the host ::ffff:a00:1 is a private address/],
      ];
      for (const [url, message] of cases) {
        const err = await refusal(f.fetch(url, 'initImage'));
        expect(err.message, url).toMatch(message);
        expect(err.message, url).toMatch(/^initImage: /);
      }
    });

    it('fetches from loopback when the allowlist names the address, its range or the hostname', async () => {
      expect(await fetcher({ allowHosts: ['127.0.0.1'] }).fetch(at('/ok.png'), 'initImage')).toEqual(png);
      expect(await fetcher({ allowHosts: ['127.0.0.0/8'] }).fetch(at('/ok.png'), 'initImage')).toEqual(png);
      expect(await fetcher({ allowHosts: ['127.0.0.0/8'] }).fetch(at('/ok.png', 'localhost'), 'initImage')).toEqual(png);
      expect(await fetcher({ allowHosts: ['LocalHost'] }).fetch(at('/ok.png', 'localhost'), 'initImage')).toEqual(png);
    });

    it('refuses allowlist entries that are neither hostnames nor CIDR ranges', () => {
      expect(() => new ImageFetcher({ allowHosts: ['10.0.0.0/40'] })).toThrow(/not a valid CIDR range/);
    });
  });

  describe('redirects', () => {
    it('re-checks every hop: an allowed host cannot redirect to a refused one', async () => {
      const f = fetcher({ allowHosts: ['localhost'] });
      const via = (to: string) => at(`/redirect?to=${encodeURIComponent(to)}`, 'localhost');
      const cases: [string, RegExp][] = [
        [at('/ok.png'), /the host 127\.0\.0\.1 is a loopback address/],
        [`http://[::1]:${port}/ok.png`, /the host ::1 is a loopback address/],
        ['http://169.254.169.254/latest/meta-data/iam/', /cloud metadata service/],
        ['http://[::ffff:169.254.169.254]/', /link-local/],
        ['file:///etc/passwd', /only http: and https: redirects are accepted/],
        ['ftp://example.com/a.png', /only http: and https: redirects are accepted/],
        [dataUrl('image/png', png), /only http: and https: redirects are accepted/],
      ];
      const before = hits.get('/ok.png') ?? 0;
      for (const [to, message] of cases) {
        const err = await refusal(f.fetch(via(to), 'initImage'));
        expect(err.message, to).toMatch(/^initImage: was redirected to /);
        expect(err.message, to).toMatch(message);
      }
      expect(hits.get('/ok.png') ?? 0).toBe(before);
    });

    it('resolves and checks a name met on a later hop', async () => {
      // The allowlist covers the address, so a name resolving into it is allowed too.
      const byAddress = fetcher({ allowHosts: ['127.0.0.1'] });
      expect(await byAddress.fetch(at(`/redirect?to=${encodeURIComponent(at('/ok.png', 'localhost'))}`), 'initImage')).toEqual(png);
      // Allowed by name only: another name for a non-public address is refused at its hop. The
      // machine's own hostname is such a name (loopback or a private address) where it resolves.
      const other = hostname().toLowerCase();
      const addresses = await lookup(other, { all: true }).catch(() => []);
      if (other === 'localhost' || addresses.length === 0 || addresses.some((a) => classifyAddress(a.address) === 'public')) return;
      const byName = fetcher({ allowHosts: ['localhost'] });
      const to = at('/ok.png', other);
      const err = await refusal(byName.fetch(at(`/redirect?to=${encodeURIComponent(to)}`, 'localhost'), 'initImage'));
      expect(err.message).toMatch(
        new RegExp(`^initImage: was redirected to ${to}; the host ${other} resolves to \\S+, an? [a-z -]+ address;`),
      );
    });

    it('follows up to maxRedirects hops between allowed hosts, and no more', async () => {
      const f = fetcher({ allowHosts: ['127.0.0.1', 'localhost'] });
      expect(await f.fetch(at(`/redirect?to=${encodeURIComponent(at('/ok.png', 'localhost'))}`), 'initImage')).toEqual(png);
      expect(await f.fetch(at('/chain?n=4'), 'initImage')).toEqual(png); // 5 redirects
      expect((await refusal(f.fetch(at('/chain?n=5'), 'initImage'))).message).toBe('initImage: was redirected more than 5 times');
      hits.delete('/loop');
      expect((await refusal(f.fetch(at('/loop'), 'initImage'))).message).toBe('initImage: was redirected more than 5 times');
      expect(hits.get('/loop')).toBe(6);
      const strict = fetcher({ allowHosts: ['127.0.0.1'], maxRedirects: 0 });
      expect((await refusal(strict.fetch(at('/chain?n=0'), 'initImage'))).message).toBe('initImage: was redirected more than 0 times');
    });
  });

  describe('limits', () => {
    it('refuses a body whose content-length is over the byte limit before reading it', async () => {
      const err = await refusal(fetcher({ allowHosts: ['127.0.0.1'] }).fetch(at('/declared-big'), 'maskImage'));
      expect(err.message).toBe(`maskImage: is 30000000 bytes; the limit is ${MAX_IMAGE_BYTES}`);
      expect(MAX_IMAGE_BYTES).toBe(20971520);
    });

    it('counts bytes while streaming when there is no content-length', async () => {
      const err = await refusal(fetcher({ allowHosts: ['127.0.0.1'], maxBytes: 100_000 }).fetch(at('/chunked-big'), 'initImage'));
      expect(err.message).toBe('initImage: is more than 100000 bytes; the limit is 100000');
    });

    it('gives up after timeoutMs for the whole fetch, whether headers or body are slow', async () => {
      const f = fetcher({ allowHosts: ['127.0.0.1'], timeoutMs: 300 });
      for (const path of ['/slow-body', '/no-answer']) {
        const started = Date.now();
        const err = await refusal(f.fetch(at(path), 'initImage'));
        expect(err.message, path).toBe('initImage: could not be fetched within 300 ms');
        expect(Date.now() - started, path).toBeLessThan(3000);
      }
    });

    it('refuses an image that declares more pixels than the limit (decompression bomb), reading only its header', async () => {
      expect(bomb.length).toBeLessThan(200_000);
      const f = fetcher({ allowHosts: ['127.0.0.1'], maxPixels: 1_000_000 });
      expect((await refusal(f.fetch(at('/bomb.png'), 'initImage'))).message).toBe(
        'initImage: is 5000x5000 pixels; the limit is 1000000 pixels',
      );
      const defaults = fetcher({ allowHosts: ['127.0.0.1'] });
      expect((await refusal(defaults.fetch(at('/huge-header.png'), 'initImage'))).message).toBe(
        'initImage: is 20000x20000 pixels; the limit is 16777216 pixels',
      );
      // Exactly at the limit is accepted.
      expect(await fetcher({ allowHosts: ['127.0.0.1'], maxPixels: 5000 * 5000 }).fetch(at('/bomb.png'), 'initImage')).toEqual(bomb);
    });
  });

  describe('content', () => {
    it('trusts the bytes, not the content type: text served as image/png is refused', async () => {
      const f = fetcher({ allowHosts: ['127.0.0.1'] });
      expect((await refusal(f.fetch(at('/text.png'), 'maskImage'))).message).toBe('maskImage: is not a PNG, JPEG or WebP image');
      expect((await refusal(f.fetch(at('/garbage.png'), 'maskImage'))).message).toMatch(/^maskImage: is not a readable image: /);
      expect((await refusal(f.fetch(at('/missing.png'), 'maskImage'))).message).toBe('maskImage: could not be fetched: HTTP 404');
    });

    it('refuses schemes other than http:, https: and data:', async () => {
      const f = fetcher({ allowHosts: ['127.0.0.1', 'localhost'] });
      for (const url of [
        'ftp://example.com/a.png',
        'file:///etc/passwd',
        'gopher://localhost:70/',
        'javascript:alert(1)',
        'blob:http://x/1',
      ]) {
        const err = await refusal(f.fetch(url, 'initImage'));
        expect(err.message, url).toBe(
          `initImage: is a ${new URL(url).protocol} URL; only http:, https: and base64 data: URLs are accepted`,
        );
      }
      expect((await refusal(f.fetch('not a url', 'initImage'))).message).toBe('initImage: is not a valid URL');
    });

    it('accepts base64 data: URLs of PNG, JPEG and WebP within the same limits', async () => {
      const f = fetcher();
      expect(await f.fetch(dataUrl('image/png', png), 'initImage')).toEqual(png);
      const jpeg = await sharp(png).jpeg().toBuffer();
      const webp = await sharp(png).webp().toBuffer();
      expect(await f.fetch(dataUrl('image/jpeg', jpeg), 'initImage')).toEqual(jpeg);
      expect(await f.fetch(dataUrl('image/webp', webp), 'initImage')).toEqual(webp);
      expect(await f.fetch(dataUrl('image/jpeg', png), 'initImage')).toEqual(png); // the declared type does not matter
      expect(await f.fetch(`DATA:image/png;base64,${png.toString('base64url')}`, 'initImage')).toEqual(png);
      const wrapped = png.toString('base64').replace(/.{60}/g, '$&\n');
      expect(await f.fetch(`data:image/png;name=a.png;base64,${wrapped}`, 'initImage')).toEqual(png);
    });

    it('refuses data: URLs that are too large (before decoding), not base64, not images, or too many pixels', async () => {
      const f = fetcher({ maxBytes: 1000 });
      const big = Buffer.concat([png, Buffer.alloc(2000)]);
      expect((await refusal(f.fetch(dataUrl('image/png', big), 'maskImage'))).message).toBe(
        `maskImage: is ${big.length} bytes; the limit is 1000`,
      );
      // 40 MB of base64 with the default limit: refused from its length alone.
      const huge = `data:image/png;base64,${'A'.repeat(40_000_000)}`;
      const started = Date.now();
      expect((await refusal(fetcher().fetch(huge, 'maskImage'))).message).toBe(
        `maskImage: is 30000000 bytes; the limit is ${MAX_IMAGE_BYTES}`,
      );
      expect(Date.now() - started).toBeLessThan(1000);

      expect((await refusal(f.fetch('data:image/png,%89PNG', 'initImage'))).message).toBe(
        'initImage: is a data: URL that is not base64-encoded',
      );
      expect((await refusal(f.fetch('data:image/png;base64', 'initImage'))).message).toBe(
        'initImage: is a data: URL that is not base64-encoded',
      );
      expect((await refusal(f.fetch(dataUrl('text/plain', png), 'initImage'))).message).toBe(
        'initImage: is a data: URL whose media type is not image/*',
      );
      for (const bad of ['iVBO!!Rw0K', 'iVBO=Rw0K', 'iVBORw0K===', 'iVBO%52w0K']) {
        expect((await refusal(f.fetch(`data:image/png;base64,${bad}`, 'initImage'))).message, bad).toBe(
          'initImage: is a data: URL with invalid base64',
        );
      }
      expect((await refusal(f.fetch(dataUrl('image/png', Buffer.from('hello, world')), 'initImage'))).message).toBe(
        'initImage: is not a PNG, JPEG or WebP image',
      );
      expect((await refusal(fetcher().fetch(dataUrl('image/png', pngDeclaring(20000, 20000)), 'initImage'))).message).toBe(
        'initImage: is 20000x20000 pixels; the limit is 16777216 pixels',
      );
    });
  });
});
