/**
 * Debian's Chromium driven by playwright-core, for the console's browser tests. The browser must be
 * installed (`apt-get install chromium`; `.ci/run` does it): without it the tests fail loudly,
 * never skip. Every request the page makes goes through a route that lets loopback through and
 * fails the test on anything else, so the console is proven to need no internet (no CDN).
 */
import { existsSync, mkdirSync } from 'node:fs'
import path from 'node:path'
import { chromium, type Browser, type BrowserContext, type Page } from 'playwright-core'

export const CHROMIUM_PATH = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium'

interface TapLike {
  teardown: (fn: () => unknown) => void
  passing: () => boolean
  fail: (message: string) => void
}

export interface BrowserSession {
  browser: Browser
  context: BrowserContext
  page: Page
  /** Where screenshots of this run go (`.tap/browser/<name>/`). */
  outputDir: string
  /** Non-loopback URLs the page asked for (each already failed the test). */
  offLoopback: string[]
  /** Console messages of type error (CSP violations among them) and uncaught page errors. */
  pageErrors: string[]
}

const LOOPBACK = /^(127\.\d+\.\d+\.\d+|localhost|\[::1\])$/

/**
 * Launches headless Chromium with one page at 1280×800. At teardown, saves a screenshot when the
 * test failed, then closes the browser.
 * @throws when Chromium is not installed at `CHROMIUM_PATH`.
 */
export async function openBrowser (t: TapLike, name: string): Promise<BrowserSession> {
  if (!existsSync(CHROMIUM_PATH)) {
    throw new Error(`Chromium is not installed at ${CHROMIUM_PATH}: run "apt-get update && apt-get install -y chromium" (.ci/run does), or set CHROMIUM_PATH`)
  }
  const outputDir = path.resolve('.tap', 'browser', name)
  mkdirSync(outputDir, { recursive: true })
  const browser = await chromium.launch({
    executablePath: CHROMIUM_PATH,
    headless: true,
    args: ['--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update', '--disable-sync', '--no-first-run']
  })
  const context = await browser.newContext({ viewport: { width: 1280, height: 800 }, locale: 'en-US', timezoneId: 'Europe/Berlin' })
  const offLoopback: string[] = []
  const pageErrors: string[] = []
  await context.route('**/*', async (route) => {
    const url = new URL(route.request().url())
    if ((url.protocol === 'http:' || url.protocol === 'https:') && !LOOPBACK.test(url.hostname)) {
      offLoopback.push(url.href)
      t.fail(`the page asked for ${url.href}, which is not on loopback`)
      await route.abort('blockedbyclient')
      return
    }
    await route.continue()
  })
  const page = await context.newPage()
  page.on('console', (m) => { if (m.type() === 'error') pageErrors.push(`${m.text()} (${m.location().url})`) })
  page.on('pageerror', (err) => { pageErrors.push(String(err)) })
  t.teardown(async () => {
    if (!t.passing()) {
      const file = path.join(outputDir, `failure-${Date.now()}.png`)
      await page.screenshot({ path: file, fullPage: true }).catch(() => {})
      process.stderr.write(`screenshot of the failure: ${file}\n`)
    }
    await browser.close()
  })
  return { browser, context, page, outputDir, offLoopback, pageErrors }
}
