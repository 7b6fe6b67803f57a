// Shared by device.mjs and pkce.mjs: headless Chromium (Debian's package, driven by
// playwright-core), argument parsing, and the sign-in page of the p8fs OAuth server.
import { chromium } from 'playwright-core';

/** `--name value` pairs into an object; a repeated name collects an array. */
export function parseArgs(argv) {
  const args = {};
  for (let i = 0; i < argv.length; i += 2) {
    const name = argv[i];
    if (!name.startsWith('--') || i + 1 >= argv.length) {
      throw new Error(`expected --name value pairs, got ${JSON.stringify(argv.slice(i))}`);
    }
    const key = name.slice(2);
    const value = argv[i + 1];
    if (key in args) {
      args[key] = [].concat(args[key], value);
    } else {
      args[key] = value;
    }
  }
  return args;
}

export function required(args, name) {
  if (args[name] === undefined) {
    throw new Error(`missing --${name}`);
  }
  return args[name];
}

/** Headless Chromium with the flags a machine without outside network needs. */
export async function launch() {
  return chromium.launch({
    executablePath: process.env.P8FS_CHROMIUM || '/usr/bin/chromium',
    headless: true,
    args: [
      '--disable-gpu',
      '--disable-quic',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
    ],
  });
}

/** Waits until one of `selectors` is on the page and returns the first one present. */
export async function waitForAny(page, selectors, timeout = 15000) {
  await page.waitForSelector(selectors.join(', '), { timeout });
  for (const selector of selectors) {
    if ((await page.locator(selector).count()) > 0) {
      return selector;
    }
  }
  throw new Error(`none of ${selectors.join(', ')} on ${page.url()}`);
}

/** Fills and submits the sign-in form if the page shows it; fails on `#error`. */
export async function signInIfAsked(page, username, password, next) {
  const found = await waitForAny(page, ['#username', ...next]);
  if (found !== '#username') {
    return found;
  }
  await page.fill('#username', username);
  await page.fill('#password', password);
  await page.click('#signin');
  const after = await waitForAny(page, ['#error', ...next]);
  if (after === '#error') {
    throw new Error(`sign-in refused: ${await page.locator('#error').innerText()}`);
  }
  return after;
}

/** Runs `body(page)` in a fresh browser; on failure prints where the page was and what it said. */
export async function withPage(body) {
  const browser = await launch();
  const context = await browser.newContext();
  const page = await context.newPage();
  try {
    return await body(page, context);
  } catch (error) {
    let text = '';
    try {
      text = (await page.locator('body').innerText()).slice(0, 2000);
    } catch {
      // the page may be gone
    }
    console.error(`failed on ${page.url()}:\n${text}`);
    throw error;
  } finally {
    await browser.close();
  }
}

/** Runs `main` and exits non-zero with the error on failure. */
export function run(main) {
  main().then(
    () => process.exit(0),
    (error) => {
      console.error(error && error.stack ? error.stack : String(error));
      process.exit(1);
    },
  );
}
