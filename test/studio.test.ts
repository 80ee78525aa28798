import { mkdirSync, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import type { Browser, BrowserContext, Locator, Page } from 'playwright-core';
import sharp from 'sharp';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import {
  CancelJobDocument,
  Image2ImageDocument,
  InpaintingDocument,
  JobsDocument,
  Text2ImageDocument,
} from '../src/client/generated/graphql.js';
import { launchBrowser } from './helpers/browser.js';
import { startTestServer, type TestServer, LOCAL_ENGINE } from './helpers/test-server.js';

/**
 * The web studio as a person uses it: Debian's Chromium on the page the server serves at /, the
 * real local engine on the tiny models behind it. Everything is found by its label or role, as a
 * person (or a screen reader) finds it. Screenshots go to docs/screenshots with UPDATE_SCREENSHOTS=1.
 */
const SCREENSHOTS =
  process.env.UPDATE_SCREENSHOTS === '1' ? path.resolve('docs/screenshots') : mkdtempSync(path.join(tmpdir(), 'studio-shots-'));
mkdirSync(SCREENSHOTS, { recursive: true });

/** Long enough on the tiny models (a few seconds) to watch it move, preview and cancel. */
const LONG_JOB = { steps: '100', width: '512', height: '512' };
const HISTORY_PAGE_SIZE = 8;

// Jobs of a few seconds, on two cores shared with the other suites: room to spare.
describe('the web studio in a browser', { timeout: 90_000 }, () => {
  let server: TestServer;
  let browser: Browser;
  const contexts: BrowserContext[] = [];
  /** Every Content-Security-Policy violation any page of these tests reported. */
  const violations: string[] = [];

  beforeAll(async () => {
    server = await startTestServer({
      env: { ...LOCAL_ENGINE, RATE_LIMIT_JOBS_BURST: '1000' },
    });
    browser = await launchBrowser();
  }, 60_000);
  afterEach(async () => {
    await Promise.all(contexts.splice(0).map((c) => c.close()));
  });
  afterAll(async () => {
    await browser?.close();
    await server?.stop();
  });

  /** A fresh browser profile (its own localStorage) on the studio, with a key pasted in and accepted. */
  async function openStudio(key: string = server.key, viewport = { width: 1280, height: 900 }): Promise<Page> {
    const context = await browser.newContext({ viewport });
    contexts.push(context);
    const page = await context.newPage();
    page.on('pageerror', (err) => console.error('studio page error:', err));
    page.on('console', (m) => {
      if (/Content Security Policy/i.test(m.text())) violations.push(m.text());
    });
    await page.goto(`${server.url}/`);
    await page.getByLabel('API key').fill(key);
    await page.getByRole('button', { name: 'Use key' }).click();
    await page.getByRole('list', { name: 'Scopes' }).waitFor();
    return page;
  }

  const field = (page: Page, label: string) => page.getByLabel(label, { exact: true });
  const generate = (page: Page) => page.getByRole('button', { name: 'Generate', exact: true }).click();
  const result = (page: Page, n: number) => page.getByRole('img', { name: new RegExp(`^Result ${n} of job `) });
  const jobPanel = (page: Page) => page.getByRole('region', { name: 'Result' });

  async function fill(page: Page, values: Record<string, string>) {
    for (const [label, value] of Object.entries(values)) await field(page, label).fill(value);
  }

  /** Waits until an <img> has loaded and decoded (naturalWidth > 0); returns its natural size. */
  async function decoded(image: Locator, timeout = 30_000): Promise<{ width: number; height: number }> {
    await image.waitFor({ timeout });
    await expect
      .poll(() => image.evaluate((img: HTMLImageElement) => (img.complete ? img.naturalWidth : 0)), { timeout })
      .toBeGreaterThan(0);
    return image.evaluate((img: HTMLImageElement) => ({ width: img.naturalWidth, height: img.naturalHeight }));
  }

  /** A PNG with a colour gradient (a stand-in for a photo), made with sharp. */
  async function gradientPng(width: number, height: number): Promise<Buffer> {
    const raw = Buffer.alloc(width * height * 3);
    for (let y = 0; y < height; y++)
      for (let x = 0; x < width; x++) raw.set([Math.round((255 * x) / width), Math.round((255 * y) / height), 160], (y * width + x) * 3);
    return sharp(raw, { raw: { width, height, channels: 3 } })
      .png()
      .toBuffer();
  }

  /** The texts that describe a control (aria-describedby), and whether they sit in the control's own container. */
  function description(control: Locator): Promise<{ text: string; besideControl: boolean }> {
    return control.evaluate((el) => {
      const described = (el.getAttribute('aria-describedby') ?? '')
        .split(' ')
        .map((id) => document.getElementById(id))
        .filter((d): d is HTMLElement => d !== null);
      return {
        text: described.map((d) => d.textContent).join(' '),
        besideControl: described.length > 0 && described.every((d) => d.parentElement === el.parentElement),
      };
    });
  }

  async function screenshot(page: Page, name: string, target?: Locator) {
    const file = path.join(SCREENSHOTS, name);
    if (target) await target.screenshot({ path: file });
    else await page.screenshot({ path: file });
  }

  it('serves the page with a Content-Security-Policy (its own scripts only) and the assets cached for good', async () => {
    const page = await fetch(`${server.url}/`);
    expect(page.headers.get('content-security-policy')).toMatch(/script-src 'self'/);
    expect(page.headers.get('cache-control')).toBe('no-cache');
    const script = /src="(\/assets\/[^"]+\.js)"/.exec(await page.text())![1]!;
    const asset = await fetch(`${server.url}${script}`, { headers: { 'accept-encoding': 'br' } });
    expect(asset.headers.get('cache-control')).toBe('public, max-age=31536000, immutable');
    expect(asset.headers.get('content-type')).toMatch(/^text\/javascript/);
  });

  it("shows the key's name and scopes, and keeps the key in localStorage, never in the URL", async () => {
    const { key } = await server.app.keys.create('alice', ['read', 'generate']);
    const page = await openStudio(key);
    await expect.poll(() => page.getByText('alice', { exact: true }).isVisible()).toBe(true);
    expect(await page.getByRole('list', { name: 'Scopes' }).getByRole('listitem').allTextContents()).toEqual(['read', 'generate']);

    await page.reload();
    await page.getByRole('list', { name: 'Scopes' }).waitFor();
    expect(await page.getByText('alice', { exact: true }).isVisible()).toBe(true);
    expect(page.url()).not.toContain(key);
    expect(await page.evaluate(() => Object.values(localStorage))).toContain(key);
  });

  it('says when a key is refused, at the key field', async () => {
    const context = await browser.newContext();
    contexts.push(context);
    const page = await context.newPage();
    await page.goto(`${server.url}/`);
    await page.getByLabel('API key').fill('sdk_not-a-key');
    await page.getByLabel('API key').press('Enter');
    await expect.poll(async () => (await description(page.getByLabel('API key'))).text).toMatch(/not accepted/);
    expect(await page.getByLabel('API key').getAttribute('aria-invalid')).toBe('true');
  });

  it('text2image: the prompt to the final images at full size, with download links', async () => {
    const page = await openStudio();
    await fill(page, { Prompt: 'a lighthouse on a cliff at dusk', Steps: '8', Width: '192', Height: '192', Samples: '2', Seed: '1234' });
    await field(page, 'Negative prompt').fill('blurry');
    await generate(page);

    expect(await decoded(result(page, 1))).toEqual({ width: 192, height: 192 });
    expect(await decoded(result(page, 2))).toEqual({ width: 192, height: 192 });
    const panel = jobPanel(page);
    expect(await panel.getByText('Done', { exact: true }).isVisible()).toBe(true);
    expect(await panel.getByRole('button', { name: 'Use seed 1234 again' }).isVisible()).toBe(true);
    const download = panel.getByRole('link', { name: 'Download image 1' });
    expect(await download.getAttribute('href')).toMatch(/\/images\/[\w-]+\.png$/);
    expect(await download.getAttribute('download')).toMatch(/\.png$/);
    await page.evaluate(() => window.scrollTo(0, 0));
    await screenshot(page, 'text2image.png');
  });

  it('shows the progress bar move (step / total, time left) and a live preview before the final image', async () => {
    const page = await openStudio();
    await fill(page, { Prompt: 'a harbour at dusk', Steps: LONG_JOB.steps, Width: LONG_JOB.width, Height: LONG_JOB.height });
    // What the person saw while it ran, recorded by the page itself (so nothing between two polls of the test is missed).
    await page.evaluate(`(() => {
      const seen = (window.__seen = { step: 0, total: 0, preview: false, eta: false });
      new MutationObserver(() => {
        if (document.querySelector('img[alt^="Result 1 of job"]')) return;
        const bar = document.querySelector('[role="progressbar"]');
        if (bar) {
          seen.step = Math.max(seen.step, Number(bar.getAttribute('aria-valuenow')));
          seen.total = Number(bar.getAttribute('aria-valuemax'));
          seen.eta ||= /left/.test(bar.getAttribute('aria-valuetext') || '');
        }
        seen.preview ||= !!document.querySelector('img[alt^="Preview of job"]');
      }).observe(document.body, { subtree: true, childList: true, attributes: true, characterData: true });
    })()`);
    await generate(page);
    await decoded(result(page, 1), 60_000);
    const seen = (await page.evaluate('window.__seen')) as { step: number; total: number; preview: boolean; eta: boolean };
    expect(seen.total).toBe(100);
    expect(seen.step).toBeGreaterThan(0);
    expect(seen.eta).toBe(true);
    expect(seen.preview).toBe(true);
  });

  it('image2image from an uploaded file', async () => {
    const page = await openStudio();
    await field(page, 'Mode').selectOption('image2image');
    await field(page, 'Init image').setInputFiles({ name: 'cottage.png', mimeType: 'image/png', buffer: await gradientPng(96, 64) });
    await expect.poll(() => page.getByText('cottage.png').isVisible()).toBe(true);
    await page.getByRole('button', { name: 'Size from the image (96×64)' }).click();
    expect(await field(page, 'Width').inputValue()).toBe('96');
    await fill(page, { Prompt: 'a cottage in the snow', Steps: '6', Strength: '0.6' });
    const sent = page.waitForRequest((r) => r.url().endsWith('/graphql') && r.method() === 'POST');
    await generate(page);
    // The file goes as a file (the GraphQL multipart request), not as a data: URL in JSON.
    const request = await sent;
    expect(request.headers()['content-type']).toMatch(/^multipart\/form-data; boundary=/);
    expect(await decoded(result(page, 1))).toEqual({ width: 96, height: 64 });
  });

  it('takes the init image dropped on its area, or by URL (and shows at the field why the server refuses a URL)', async () => {
    const page = await openStudio();
    await field(page, 'Mode').selectOption('image2image');
    const png = (await gradientPng(80, 48)).toString('base64');
    const dropped = await page.evaluateHandle((base64: string) => {
      const transfer = new DataTransfer();
      const bytes = Uint8Array.from(atob(base64), (c) => c.charCodeAt(0));
      transfer.items.add(new File([bytes], 'dropped.png', { type: 'image/png' }));
      return transfer;
    }, png);
    // The area the person drops on is the one around the file input labelled "Init image".
    await field(page, 'Init image').locator('..').dispatchEvent('drop', { dataTransfer: dropped });
    await expect.poll(() => page.getByText('dropped.png').isVisible()).toBe(true);
    expect(await page.getByRole('button', { name: 'Size from the image (104×64)' }).isVisible()).toBe(true);

    // A URL replaces the file; this server does not fetch from loopback, and says so beside the field.
    await field(page, 'Init image URL').fill(`${server.url}/images/none.png`);
    await field(page, 'Init image URL').press('Enter');
    await fill(page, { Prompt: 'a cottage', Steps: '2', Width: '64', Height: '64' });
    await generate(page);
    const init = field(page, 'Init image');
    await expect.poll(async () => (await description(init)).text).toMatch(/loopback/);
    expect(await init.getAttribute('aria-invalid')).toBe('true');
  });

  it('inpainting with a mask painted with the mouse (and partly erased): the painted part is redrawn, the rest kept', async () => {
    const page = await openStudio();
    await field(page, 'Mode').selectOption('inpainting');
    const model = field(page, 'Model');
    const inpaintingModel = await model.locator('option', { hasText: '— inpainting' }).first().getAttribute('value');
    await model.selectOption(inpaintingModel!);
    const init = await gradientPng(128, 128);
    await field(page, 'Init image').setInputFiles({ name: 'garden.png', mimeType: 'image/png', buffer: init });

    const canvas = page.getByRole('img', { name: 'Mask painting area' });
    await canvas.waitFor();
    let box = (await canvas.boundingBox())!;
    const at = (fx: number, fy: number) => [box.x + box.width * fx, box.y + box.height * fy] as const;
    await page.mouse.move(...at(0.35, 0.35));
    await page.mouse.down();
    await page.mouse.move(...at(0.65, 0.5), { steps: 12 });
    await page.mouse.move(...at(0.4, 0.65), { steps: 12 });
    await page.mouse.up();
    // The stroke's start rubbed out again with the eraser at its largest.
    await field(page, 'Brush size').fill('128');
    await page.getByRole('button', { name: 'Eraser' }).click();
    expect(await page.getByRole('button', { name: 'Eraser' }).getAttribute('aria-pressed')).toBe('true');
    box = (await canvas.boundingBox())!; // the click may have scrolled the page
    await page.mouse.move(...at(0.35, 0.35));
    await page.mouse.down();
    await page.mouse.up();
    await fill(page, { Prompt: 'a red door', Steps: '6', Width: '128', Height: '128', 'Mask blur': '2' });
    await screenshot(page, 'inpainting-mask.png', page.getByRole('region', { name: 'Create' }));

    await generate(page);
    await decoded(result(page, 1));
    const sent = (await server.gql(JobsDocument, { first: 1 })).data!.jobs.edges[0]!.node.parameters;
    expect(sent).toMatchObject({ prompt: 'a red door', maskBlur: 2, keepUnmasked: true });
    // The image the server made: the corner, far from the stroke, is the init image's; the stroke is not.
    const src = (await result(page, 1).getAttribute('src'))!;
    const made = await sharp(Buffer.from(await (await fetch(src)).arrayBuffer()))
      .raw()
      .toBuffer({ resolveWithObject: true });
    const original = await sharp(init).raw().toBuffer();
    expect([made.info.width, made.info.height]).toEqual([128, 128]);
    const pixel = (data: Buffer, channels: number, x: number, y: number) => [
      ...data.subarray((y * 128 + x) * channels, (y * 128 + x) * channels + 3),
    ];
    expect(pixel(made.data, made.info.channels, 4, 4)).toEqual(pixel(original, 3, 4, 4));
    expect(pixel(made.data, made.info.channels, 122, 122)).toEqual(pixel(original, 3, 122, 122));
    expect(pixel(made.data, made.info.channels, 64, 54)).not.toEqual(pixel(original, 3, 64, 54));
    expect(pixel(made.data, made.info.channels, 45, 45)).toEqual(pixel(original, 3, 45, 45)); // erased
  });

  it('a job appears at once with its queue position, and Cancel stops it while it waits', async () => {
    // The engine is busy with another job of the same key, so the new one waits in the queue.
    const busy = await server.gql(Text2ImageDocument, {
      input: { prompt: 'keeps the engine busy', numInferenceSteps: 100, width: 512, height: 512, samples: 4 },
    });
    const page = await openStudio();
    await fill(page, { Prompt: 'a queued job', Steps: '4', Width: '64', Height: '64' });
    await generate(page);
    const panel = jobPanel(page);
    await panel.getByText(/In the queue: (next to start|\d+ jobs? ahead)/).waitFor();
    expect(await panel.getByText('Queued', { exact: true }).isVisible()).toBe(true);
    await panel.getByRole('button', { name: 'Cancel' }).click();
    await panel.getByText('Canceled', { exact: true }).waitFor();
    expect(await panel.getByRole('button', { name: 'Cancel' }).count()).toBe(0);
    await server.gql(CancelJobDocument, { id: busy.data!.text2image.id });
  });

  it('Cancel stops a running job: CANCELED, in the result and in the history', async () => {
    const page = await openStudio();
    await fill(page, { Prompt: 'a long job', Steps: LONG_JOB.steps, Width: LONG_JOB.width, Height: LONG_JOB.height, Samples: '4' });
    await generate(page);
    const bar = page.getByRole('progressbar');
    await expect.poll(async () => Number(await bar.getAttribute('aria-valuenow')), { timeout: 30_000 }).toBeGreaterThan(0);
    await jobPanel(page).getByRole('button', { name: 'Cancel' }).click();
    await jobPanel(page).getByText('Canceled', { exact: true }).waitFor();
    expect(await result(page, 1).count()).toBe(0);
    const history = page.getByRole('list', { name: 'Jobs, newest first' });
    await expect.poll(() => history.getByRole('listitem').first().textContent()).toMatch(/a long job.*Canceled/s);
  });

  it('shows a refused field next to its control, and moves the focus there', async () => {
    const page = await openStudio();
    await fill(page, { Prompt: Array(80).fill('lighthouse').join(' '), Steps: '4', Width: '65', Height: '64' });
    await generate(page);
    const width = field(page, 'Width');
    await expect.poll(async () => (await description(width)).text, { timeout: 10_000 }).toMatch(/multiple of 8/);
    expect((await description(width)).besideControl).toBe(true);
    expect(await width.getAttribute('aria-invalid')).toBe('true');
    expect(await width.evaluate((el) => el === document.activeElement)).toBe(true);

    // Fixed, the width's error goes; then the prompt is refused by the engine's tokenizer (CLIP's 75 tokens).
    await width.fill('64');
    expect((await description(width)).text).not.toMatch(/multiple of 8/);
    await generate(page);
    const prompt = field(page, 'Prompt');
    await expect.poll(async () => (await description(prompt)).text, { timeout: 10_000 }).toMatch(/75/);
    expect((await description(prompt)).besideControl).toBe(true);
    expect(await prompt.evaluate((el) => el === document.activeElement)).toBe(true);
  });

  it('history: newest first, a page at a time, and "Use these settings again" fills the form', async () => {
    const { key } = await server.app.keys.create('history', ['read', 'generate']);
    const total = HISTORY_PAGE_SIZE + 3;
    const init = `data:image/png;base64,${(await gradientPng(64, 64)).toString('base64')}`;
    // White (repaint) in the middle 32 x 32, black around it.
    const square = await sharp({ create: { width: 32, height: 32, channels: 3, background: '#fff' } })
      .png()
      .toBuffer();
    const maskPng = await sharp({ create: { width: 64, height: 64, channels: 3, background: '#000' } })
      .composite([{ input: square, left: 16, top: 16 }])
      .png()
      .toBuffer();
    const mask = `data:image/png;base64,${maskPng.toString('base64')}`;
    for (let i = 0; i < total; i++) {
      const input = { prompt: `history prompt ${i}`, numInferenceSteps: 2, width: 64, height: 64, seed: 1000 + i, guidanceScale: 6.5 };
      const created =
        i === 1
          ? await server.gql(Image2ImageDocument, { input: { ...input, initImage: init, strength: 0.55 } }, key)
          : i === 3
            ? await server.gql(
                InpaintingDocument,
                { input: { ...input, initImage: init, maskImage: mask, maskBlur: 7, keepUnmasked: false } },
                key,
              )
            : await server.gql(Text2ImageDocument, { input }, key);
      expect(created.errors).toBeUndefined();
    }
    const page = await openStudio(key);
    const history = page.getByRole('list', { name: 'Jobs, newest first' });
    const items = history.getByRole('listitem');
    await expect.poll(() => items.count()).toBe(HISTORY_PAGE_SIZE);
    expect(await items.first().textContent()).toContain(`history prompt ${total - 1}`);
    await page.getByRole('button', { name: 'Load more' }).click();
    await expect.poll(() => items.count()).toBe(total);
    expect(await items.last().textContent()).toContain('history prompt 0');
    expect(await page.getByRole('button', { name: 'Load more' }).count()).toBe(0);

    await items.filter({ hasText: 'history prompt 2' }).getByRole('button', { name: 'Use these settings again' }).click();
    await expect.poll(() => field(page, 'Prompt').inputValue()).toBe('history prompt 2');
    expect(await field(page, 'Seed').inputValue()).toBe('1002');
    expect(await field(page, 'Steps').inputValue()).toBe('2');
    expect(await field(page, 'Guidance scale').inputValue()).toBe('6.5');

    // An image2image job brings its mode, strength and init image back (fetched only now: the history leaves images out).
    await items
      .filter({ hasText: /history prompt 1(?!\d)/ })
      .getByRole('button', { name: 'Use these settings again' })
      .click();
    await expect.poll(() => field(page, 'Mode').inputValue()).toBe('image2image');
    expect(await field(page, 'Strength').inputValue()).toBe('0.55');
    await expect.poll(() => page.getByText(/image of job .* 64×64/).isVisible()).toBe(true);

    // An inpainting job brings its mask back into the painter, where it can be changed.
    await items.filter({ hasText: 'history prompt 3' }).getByRole('button', { name: 'Use these settings again' }).click();
    await expect.poll(() => field(page, 'Mode').inputValue()).toBe('inpainting');
    const painted = (x: number, y: number) =>
      page
        .getByRole('img', { name: 'Mask painting area' })
        .evaluate((canvas: HTMLCanvasElement, [px, py]) => canvas.getContext('2d')!.getImageData(px!, py!, 1, 1).data[3]! > 0, [x, y]);
    await expect.poll(() => painted(32, 32)).toBe(true);
    expect(await painted(4, 4)).toBe(false);
    expect(await field(page, 'Mask blur').inputValue()).toBe('7');
    expect(await field(page, 'Keep unmasked pixels').isChecked()).toBe(false);
  });

  it('tells the person what they can do: network down, a scope the key lacks, a job that fails', async () => {
    // Network down: the request never reaches the server.
    const page = await openStudio();
    await fill(page, { Prompt: 'a calm sea', Steps: '2', Width: '64', Height: '64' });
    await page.route('**/graphql', (route) => route.abort('internetdisconnected'));
    await generate(page);
    await page
      .getByRole('alert')
      .filter({ hasText: /Cannot reach the server/ })
      .waitFor();
    await page.unroute('**/graphql');

    // A job that fails: a damaged image (a PNG cut short), which the engine cannot decode.
    await field(page, 'Mode').selectOption('image2image');
    const damaged = (await gradientPng(64, 64)).subarray(0, 200).toString('base64');
    await field(page, 'Init image URL').fill(`data:image/png;base64,${damaged}`);
    await field(page, 'Init image URL').press('Enter');
    await generate(page);
    const failure = jobPanel(page).getByRole('alert');
    await failure.waitFor({ timeout: 30_000 });
    expect(await failure.textContent()).toMatch(/INVALID_INPUT: initImage: the image cannot be decoded/);
    expect(await jobPanel(page).getByText('Failed', { exact: true }).isVisible()).toBe(true);

    // A key that may only read: it says so, and generating is refused with the scope it lacks.
    const { key } = await server.app.keys.create('reader', ['read']);
    const reader = await openStudio(key);
    expect(await reader.getByText(/can only read/).isVisible()).toBe(true);
    await fill(reader, { Prompt: 'a calm sea', Steps: '2', Width: '64', Height: '64' });
    await generate(reader);
    await reader
      .getByRole('alert')
      .filter({ hasText: /lacks the "generate" scope/ })
      .waitFor();
  });

  it('is usable with the keyboard: every control in a logical order, the focus visible', async () => {
    const page = await openStudio();
    await page.getByLabel('API key').focus();
    const order: string[] = [];
    for (let i = 0; i < 40; i++) {
      order.push(
        await page.evaluate(() => {
          const el = document.activeElement as HTMLInputElement | null;
          return (el?.labels?.[0]?.textContent ?? el?.getAttribute('aria-label') ?? el?.textContent ?? '').trim();
        }),
      );
      await page.keyboard.press('Tab');
    }
    const expected = ['API key', 'Use key', 'Mode', 'Model', 'Prompt', 'Negative prompt', 'Embeddings', 'Trigger word goes into'];
    const settings = ['Steps', 'Guidance scale', 'Width', 'Height', 'Samples', 'Scheduler', 'Seed', 'Random', 'Safety checker', 'Generate'];
    const positions = [...expected, ...settings].map((name) => order.indexOf(name));
    expect(
      positions.every((p) => p >= 0),
      `focus order: ${order.join(' → ')}`,
    ).toBe(true);
    expect([...positions].sort((a, b) => a - b)).toEqual(positions);

    // The focus ring of a control reached by the keyboard.
    await page.getByRole('button', { name: 'Generate', exact: true }).focus();
    await page.keyboard.press('Shift+Tab');
    await page.keyboard.press('Tab');
    const outline = await page.evaluate(() => {
      const style = getComputedStyle(document.activeElement!);
      return { style: style.outlineStyle, width: parseFloat(style.outlineWidth) };
    });
    expect(outline.style).not.toBe('none');
    expect(outline.width).toBeGreaterThan(0);
  });

  it('fits a phone (375 px): one column, no horizontal scroll', async () => {
    const page = await openStudio(server.key, { width: 375, height: 800 });
    const noSideScroll = () => page.evaluate(() => document.scrollingElement!.scrollWidth);
    expect(await noSideScroll()).toBeLessThanOrEqual(375);
    const create = (await page.getByRole('region', { name: 'Create' }).boundingBox())!;
    const resultBox = (await jobPanel(page).boundingBox())!;
    expect(resultBox.x).toBe(create.x);
    expect(resultBox.y).toBeGreaterThan(create.y + create.height - 1);

    await field(page, 'Mode').selectOption('inpainting');
    await field(page, 'Init image').setInputFiles({
      name: 'a-rather-long-file-name-for-a-phone-screen.png',
      mimeType: 'image/png',
      buffer: await gradientPng(320, 240),
    });
    await page.getByRole('img', { name: 'Mask painting area' }).waitFor();
    await field(page, 'Prompt').fill('an_unbroken_string_of_characters_that_would_push_the_page_sideways_if_it_could');
    expect(await noSideScroll()).toBeLessThanOrEqual(375);

    await field(page, 'Mode').selectOption('text2image');
    await fill(page, { Prompt: 'a lighthouse at dusk', Steps: '6', Width: '256', Height: '256' });
    await generate(page);
    await decoded(result(page, 1));
    expect(await noSideScroll()).toBeLessThanOrEqual(375);
    await page.evaluate(() => window.scrollTo(0, 0));
    await screenshot(page, 'phone.png');
  });

  it('violated no rule of its Content-Security-Policy in any of the above', () => {
    expect(violations).toEqual([]);
  });
});
