/**
 * The dashboard served by the API, in a real browser (Debian's Chromium driven by playwright-core):
 *  1. the static files: HTML with the Content-Security-Policy, and nothing else on disk reachable;
 *  2. a short run started over HTTP, watched in the page to the end: the key typed into the page, the run
 *     picked from the list, live curves from the SSE stream, the status, the report's images. Saves a
 *     screenshot to .sophia/artifacts/dashboard.png (SOPHIA_ARTIFACTS overrides the folder) for people to look at;
 *     docs/api/dashboard.png is one such screenshot, committed.
 */
import { existsSync, mkdirSync } from 'node:fs';
import * as path from 'node:path';
import { type Browser, type Page, chromium } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type ApiHarness, startApiHarness } from './api-harness';
import { REPO_ROOT } from './stack';

const CHROMIUM = process.env.SOPHIA_CHROMIUM ?? '/usr/bin/chromium';
const SCREENSHOT = path.join(process.env.SOPHIA_ARTIFACTS ?? path.join(REPO_ROOT, '.sophia', 'artifacts'), 'dashboard.png');
const TERMINAL = ['completed', 'failed', 'canceled', 'terminated', 'timed_out'];

/** The ci preset, shorter: fewer SFT, reward-model and RL steps (on the chunk / evaluation grids), greedy eval. */
const OVERRIDES = {
  name: 'dashboard test',
  sft: { steps: 60, evalEvery: 20, chunkSteps: 60, warmupSteps: 10 },
  rewardModel: { steps: 20, evalEvery: 10, chunkSteps: 20 },
  rl: { steps: 4, checkpointEvery: 2, evalEvery: 2 },
  evaluation: { k: 0 },
};

/**
 * Polls a JavaScript expression in the page until it is truthy. (page.waitForFunction evaluates its predicate
 * with eval inside the page, which the dashboard's CSP forbids; page.evaluate goes through the debugger.)
 */
async function waitInPage(page: Page, expression: string, what: string, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (await page.evaluate<unknown>(expression)) return;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs / 1000} s waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 500));
  }
}

describe('dashboard', () => {
  let h: ApiHarness;
  let runId: string;
  let browser: Browser | undefined;

  beforeAll(async () => {
    h = await startApiHarness({ workers: true, storage: 's3' });
    runId = `dash-${h.suffix}`;
    // Start training now, so it runs while the fast test checks the files.
    const created = await h.call('POST', '/runs', { preset: 'ci', runId, overrides: OVERRIDES });
    expect(created.status, created.text).toBe(201);
  }, 120_000);

  afterAll(async () => {
    await browser?.close();
    await h?.close();
  }, 120_000);

  it('serves the page with a CSP, and only its own files', async () => {
    const page = await h.call('GET', '/dashboard/', undefined, null);
    expect(page.status).toBe(200);
    expect(page.headers.get('content-type')).toMatch(/^text\/html/);
    const csp = page.headers.get('content-security-policy') ?? '';
    expect(csp).toContain("script-src 'self'");
    expect(csp).toContain("default-src 'self'");
    expect(page.text).toContain('<script src="app.js"');
    expect(page.text).not.toMatch(/<script>|\son[a-z]+=/i); // no inline script or handlers: the CSP would block them
    for (const file of ['app.js', 'style.css', 'uPlot.iife.min.js', 'uPlot.min.css']) {
      const res = await h.call('GET', `/dashboard/${file}`, undefined, null);
      expect(res.status, file).toBe(200);
      expect(res.headers.get('content-security-policy'), file).toBe(csp);
    }
    for (const route of [
      '/dashboard/../../package.json', // fetch normalizes this to /package.json: no such route
      '/dashboard/..%2F..%2Fpackage.json',
      '/dashboard/%2e%2e%2fapi%2fapp.ts',
      '/dashboard/dashboard.controller.ts',
      '/dashboard/nope.js',
      '/dashboard/constructor',
      '/dashboard/__proto__',
    ]) {
      const res = await h.call('GET', route, undefined, null);
      expect(res.status, route).toBe(404);
      expect(res.headers.get('content-type'), route).toMatch(/^application\/json/);
      expect(res.json, route).toMatchObject({ statusCode: 404, error: 'Not Found' });
      expect(res.text, route).not.toContain('"devDependencies"');
    }
  });

  it(
    'shows a run live to its end, with curves and the report',
    async () => {
      if (!existsSync(CHROMIUM)) {
        throw new Error(`Chromium is not installed at ${CHROMIUM}: run \`apt-get install -y chromium\` (or set SOPHIA_CHROMIUM to a Chromium binary)`);
      }
      browser = await chromium.launch({ executablePath: CHROMIUM, headless: true, args: ['--no-sandbox'] });
      const page = await browser.newPage({ viewport: { width: 1440, height: 1000 } });
      const pageErrors: string[] = [];
      const cspViolations: string[] = [];
      page.on('pageerror', (err) => pageErrors.push(err.message));
      page.on('console', (msg) => {
        if (/Content Security Policy|Refused to/i.test(msg.text())) cspViolations.push(msg.text());
      });

      await page.goto(`${h.url}/dashboard/`);
      // A wrong key: the API's 401 shows in the status line.
      await page.fill('#api-key', 'not-a-key');
      await page.click('#use-key');
      await page.locator('#status-line', { hasText: '401' }).waitFor({ timeout: 15_000 });
      await page.fill('#api-key', h.keys.admin);
      await page.click('#use-key');
      await page.locator(`[data-run-id="${runId}"]`).click({ timeout: 30_000 });
      expect(new URL(page.url()).hash).toBe(`#run=${runId}`);

      await waitInPage(page, `${JSON.stringify(TERMINAL)}.includes(document.body.dataset.runStatus)`, 'the run to end', 240_000);
      expect(await page.evaluate<string | undefined>('document.body.dataset.runStatus')).toBe('completed');

      const points = async (chart: string) => Number((await page.locator(`.chart[data-chart="${chart}"]`).getAttribute('data-points', { timeout: 20_000 })) ?? 0);
      await waitInPage(page, `['rewards', 'sft-loss'].every((c) => Number(document.querySelector('.chart[data-chart="' + c + '"]')?.dataset.points) > 0)`, 'the curves', 20_000);
      expect(await points('sft-loss')).toBeGreaterThan(0);
      expect(await points('rewards')).toBeGreaterThan(0);
      const charts = await page.evaluate<{ chart: string; points: number }[]>(`[...document.querySelectorAll('.chart')].map((c) => ({ chart: c.dataset.chart, points: Number(c.dataset.points) }))`);
      for (const c of charts) expect(c.points, c.chart).toBeGreaterThan(0);
      expect(charts.map((c) => c.chart)).toEqual(expect.arrayContaining(['sft-loss', 'rm-loss', 'rewards', 'accuracy', 'gamma', 'kl']));

      // The report: markdown, and its PNG plots fetched with the key and shown from blob: URLs.
      await waitInPage(page, `(() => { const imgs = [...document.querySelectorAll('#report img')]; return imgs.length > 0 && imgs.every((i) => i.complete && i.naturalWidth > 0); })()`, "the report's images", 60_000);
      const images = await page.evaluate<string[]>(`[...document.querySelectorAll('#report img')].map((i) => i.getAttribute('src'))`);
      expect(images.length).toBeGreaterThan(0);
      for (const src of images) expect(src).toMatch(/^blob:/);
      expect(await page.locator('#report h3').count()).toBeGreaterThan(0);
      expect(await page.locator('#timeline .pill.done').count()).toBe(5);
      expect(await page.locator('#checkpoints tbody tr').count()).toBeGreaterThan(0);

      mkdirSync(path.dirname(SCREENSHOT), { recursive: true });
      await page.screenshot({ path: SCREENSHOT, fullPage: true });
      expect(pageErrors).toEqual([]);
      expect(cspViolations).toEqual([]);
    },
    360_000,
  );
});
