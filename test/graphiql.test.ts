import type { Browser, Locator, Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { launchBrowser } from './helpers/browser.js';
import { startTestServer, type TestServer, LOCAL_ENGINE } from './helpers/test-server.js';

/**
 * GraphiQL as a newcomer meets it: opened in a real browser (Debian's Chromium), the Docs pane
 * with no key, then a key typed into the Headers tab, a mutation, and a subscription streamed over
 * the WebSocket to SUCCESS. GraphiQL is a third party's page, so its editors are found by its classes.
 */
describe('GraphiQL in a browser', { timeout: 120_000 }, () => {
  let server: TestServer;
  let browser: Browser;
  let page: Page;

  beforeAll(async () => {
    server = await startTestServer({ env: { ...LOCAL_ENGINE } });
    browser = await launchBrowser();
    page = await browser.newPage({ viewport: { width: 1400, height: 900 } });
    await page.goto(`${server.url}/graphql`);
  }, 60_000);
  afterAll(async () => {
    await browser?.close();
    await server?.stop();
  });

  /** Replaces a Monaco editor's text, then drops what its auto-closing added after the cursor. */
  async function setEditor(editor: Locator, text: string) {
    await editor.locator('.monaco-editor').click();
    await page.keyboard.press('ControlOrMeta+A');
    await page.keyboard.insertText(text);
    await page.keyboard.press('Shift+ControlOrMeta+End');
    await page.keyboard.press('Delete');
  }
  const queryEditor = () => page.locator('.graphiql-query-editor');
  /** The response pane's text, its soft line wraps undone. */
  const response = async () => (await page.locator('.graphiql-response').innerText()).replace(/\s+/g, ' ');
  /**
   * Puts the operation in the editor and runs it until a response shows. On a loaded machine
   * GraphiQL can take the click before its state has caught up with the editor and run nothing
   * (seen when four browser suites ran at once): then it is clicked again.
   */
  async function run(operation: string) {
    await setEditor(queryEditor(), operation);
    const text = async () => (await queryEditor().locator('.view-lines').innerText()).replace(/\s+/g, '');
    await expect.poll(text, { timeout: 15_000 }).toBe(operation.replace(/\s+/g, ''));
    const before = await response();
    for (let attempt = 1; ; attempt++) {
      await page.getByRole('button', { name: /^Execute query/ }).click();
      try {
        await expect.poll(async () => (await response()) !== before, { timeout: 10_000 }).toBe(true);
        return;
      } catch (err) {
        if (attempt === 3) throw err;
      }
    }
  }

  it('shows the schema in the Docs pane with no key: the Query, Mutation and Subscription roots', async () => {
    await page.getByRole('button', { name: 'Show Documentation Explorer' }).click();
    const docs = page.locator('.graphiql-doc-explorer');
    await expect.poll(() => docs.innerText(), { timeout: 15_000 }).toMatch(/query:\s*Query/);
    const text = await docs.innerText();
    expect(text).toMatch(/mutation:\s*Mutation/);
    expect(text).toMatch(/subscription:\s*Subscription/);
    expect(text).not.toMatch(/Error fetching schema/i);
  });

  it('refuses an operation with the empty key it opens with, saying what to send', async () => {
    await run('{ jobs { edges { cursor } } }');
    await expect.poll(() => response(), { timeout: 30_000 }).toMatch(/an API key is required/);
  });

  it('with a key typed in the Headers tab, creates a job and streams it to SUCCESS over the WebSocket', async () => {
    await page.getByRole('button', { name: 'Headers' }).click();
    await setEditor(page.locator('.graphiql-editor-tool .graphiql-editor:not(.hidden)'), JSON.stringify({ 'API-Key': server.key }));

    await run('mutation { text2image(input: { prompt: "a lighthouse", numInferenceSteps: 4, width: 64, height: 64 }) { id status } }');
    await expect.poll(() => response(), { timeout: 30_000 }).toMatch(/"id":/);
    const id = /"id": "([^"]+)"/.exec(await response())![1]!;

    // Over the WebSocket, not HTTP (where a finished job's snapshot alone would also read SUCCESS).
    const sockets: string[] = [];
    page.on('websocket', (ws) => sockets.push(ws.url()));
    await run(`subscription { jobStatus(id: "${id}") { id status progress { step totalSteps } downloadUrls } }`);
    await expect.poll(() => response(), { timeout: 60_000 }).toMatch(/"status":\s*"SUCCESS"/);
    const final = await response();
    expect(final).toContain(id);
    expect(final).toMatch(/\/images\//);
    expect(sockets.some((url) => url.startsWith(server.url.replace(/^http/, 'ws')))).toBe(true);
  });
});
