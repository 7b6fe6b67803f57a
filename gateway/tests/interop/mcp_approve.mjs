// The user's half of an MCP client's OAuth sign-in, in headless Chromium: opens the
// authorization URL the client built (PKCE, state and resource already in it), signs in when
// asked, approves on the consent page, and captures the redirect to the client's redirect_uri
// (answered inside the browser, no listener needed). Prints {"redirect", "consent"} as JSON.
//
// node mcp_approve.mjs --url URL --redirect-uri URI --username U --password P
import { parseArgs, required, run, signInIfAsked, withPage } from './browser.mjs';

run(async () => {
  const args = parseArgs(process.argv.slice(2));
  const url = required(args, 'url');
  const redirectUri = required(args, 'redirect-uri');
  const username = required(args, 'username');
  const password = required(args, 'password');
  await withPage(async (page, context) => {
    let captured = null;
    const isRedirect = (target) => target.toString().startsWith(redirectUri);
    await context.route(isRedirect, (route) => {
      captured = route.request().url();
      return route.fulfill({ status: 200, contentType: 'text/plain', body: 'code received' });
    });
    await page.goto(url);
    const found = await signInIfAsked(page, username, password, ['#approve', '#error']);
    if (found === '#error') {
      throw new Error(`the authorize page says: ${await page.locator('#error').innerText()}`);
    }
    const consent = await page.locator('body').innerText();
    await page.click('#approve');
    await page.waitForURL(isRedirect, { timeout: 15000 });
    process.stdout.write(`${JSON.stringify({ redirect: captured || page.url(), consent })}\n`);
  });
});
