/**
 * Runs a script in a page of a real headless Chromium (playwright-core, no bundled browser):
 * the system Chromium at $CHROMIUM_PATH or /usr/bin/chromium, a fresh temporary profile per run,
 * everything closed and removed afterwards.
 *
 *   const skip = chromiumSkipReason();          // use as node:test `skip`
 *   const { result, console } = await runInChromium('http://127.0.0.1:1234/', () => document.title);
 */
import { createHash, X509Certificate } from 'node:crypto';
import { accessSync, constants, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chromium, type BrowserContext, type Page } from 'playwright-core';

export const DEFAULT_CHROMIUM_PATH = '/usr/bin/chromium';

export const CHROMIUM_FLAGS: readonly string[] = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
];

/** The Chromium executable: $CHROMIUM_PATH, else /usr/bin/chromium. */
export function chromiumPath(): string {
  return process.env.CHROMIUM_PATH || DEFAULT_CHROMIUM_PATH;
}

export function chromiumInstalled(): boolean {
  try {
    accessSync(chromiumPath(), constants.X_OK);
    return true;
  } catch {
    return false;
  }
}

/**
 * For node:test's `skip`: `false` when Chromium can run, else a message saying how to get it.
 * With CI=true it is always `false`, so a missing browser fails the test instead of hiding it.
 */
export function chromiumSkipReason(): string | false {
  if (chromiumInstalled() || process.env.CI === 'true') return false;
  return `Chromium not found at ${chromiumPath()}: install it (apt-get install -y chromium) or set CHROMIUM_PATH; with CI=true this test fails instead of skipping`;
}

export interface RunInChromiumOptions {
  /** Limit for loading the page and for the script, in milliseconds. @default 15000 */
  timeoutMs?: number;
  /** Called with every console line of the page as it happens. */
  onConsole?: (line: string) => void;
  /**
   * PEM certificates the browser accepts whatever their issuer (by public key, Chromium's
   * `--ignore-certificate-errors-spki-list`): https pages and wss:// servers with test certificates.
   */
  trustCertificates?: readonly Buffer[];
}

export interface RunInChromiumResult<T> {
  /** What the script returned (must be serialisable by Playwright: no bigint, use strings). */
  result: T;
  /** The page's console output, `"<type>: <text>"` per line. */
  console: string[];
  /** Uncaught exceptions in the page. */
  pageErrors: string[];
}

/**
 * Opens `page` — a URL (http:, https:, file:, data:, about:) or an HTML document — in a fresh
 * headless Chromium, evaluates `script` there (a function, or an expression string; a returned
 * promise is awaited) and resolves with its result. The browser and its temporary profile are
 * always removed, also on failure.
 */
export async function runInChromium<T>(
  page: string | URL,
  script: string | (() => T | Promise<T>),
  options: RunInChromiumOptions = {},
): Promise<RunInChromiumResult<T>> {
  const timeoutMs = options.timeoutMs ?? 15_000;
  const consoleLines: string[] = [];
  const pageErrors: string[] = [];
  return withFreshChromium(timeoutMs, options.trustCertificates, async (tab) => {
    tab.on('console', (msg) => {
      const line = `${msg.type()}: ${msg.text()}`;
      consoleLines.push(line);
      options.onConsole?.(line);
    });
    tab.on('pageerror', (err) => pageErrors.push(err.stack ?? err.message));
    const target = page instanceof URL ? page.href : page;
    if (/^(https?|file|data|about):/i.test(target)) await tab.goto(target, { waitUntil: 'load' });
    else await tab.setContent(target, { waitUntil: 'load' });
    const result = (await withTimeout(tab.evaluate(script as () => T), timeoutMs)) as T;
    return { result, console: consoleLines, pageErrors };
  });
}

/**
 * For tests that steer the page from outside while it runs (network off and on, lifecycle
 * freezes, several steps): opens `page` in a fresh headless Chromium and calls `body` with the
 * tab and its context. The browser and its temporary profile are always removed afterwards.
 */
export async function withChromiumPage<T>(
  page: string | URL,
  body: (tab: Page, context: BrowserContext) => Promise<T>,
  options: RunInChromiumOptions = {},
): Promise<T> {
  return withFreshChromium(options.timeoutMs ?? 15_000, options.trustCertificates, async (tab, context) => {
    if (options.onConsole) tab.on('console', (msg) => options.onConsole!(`${msg.type()}: ${msg.text()}`));
    await tab.goto(page instanceof URL ? page.href : page, { waitUntil: 'load' });
    return body(tab, context);
  });
}

/**
 * One headless Chromium with a throwaway profile, its first tab handed to `body`; the browser
 * and the profile are removed afterwards, also on failure.
 */
async function withFreshChromium<T>(
  timeoutMs: number,
  trustCertificates: readonly Buffer[] | undefined,
  body: (tab: Page, context: BrowserContext) => Promise<T>,
): Promise<T> {
  const userDataDir = mkdtempSync(join(tmpdir(), 'rtm-chromium-'));
  // Playwright refuses `--user-data-dir` in `args` for launch(); a persistent context with our
  // own fresh directory is the same thing (one browser, one throwaway profile).
  let context;
  try {
    context = await chromium.launchPersistentContext(userDataDir, {
      executablePath: chromiumPath(),
      args: [...CHROMIUM_FLAGS, ...trustFlags(trustCertificates)],
      headless: true,
      timeout: timeoutMs,
    });
  } catch (err) {
    rmSync(userDataDir, { recursive: true, force: true });
    throw err;
  }
  try {
    const tab = context.pages()[0] ?? (await context.newPage());
    tab.setDefaultTimeout(timeoutMs);
    return await body(tab, context);
  } finally {
    await context.close().catch(() => {});
    rmSync(userDataDir, { recursive: true, force: true });
  }
}

/** Chromium's flag that accepts these certificates: the base64 SHA-256 of each public key (SPKI). */
function trustFlags(certificates: readonly Buffer[] | undefined): string[] {
  if (!certificates?.length) return [];
  const spkis = certificates.map((pem) =>
    createHash('sha256')
      .update(new X509Certificate(pem).publicKey.export({ type: 'spki', format: 'der' }))
      .digest('base64'),
  );
  return [`--ignore-certificate-errors-spki-list=${spkis.join(',')}`];
}

async function withTimeout<T>(promise: Promise<T>, ms: number): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  try {
    return await Promise.race([
      promise,
      new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error(`the page script did not finish within ${ms} ms`)), ms);
      }),
    ]);
  } finally {
    clearTimeout(timer);
  }
}
