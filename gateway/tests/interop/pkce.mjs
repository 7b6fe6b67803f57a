// The browser half of the authorization code flow with PKCE (S256) in headless Chromium: for each
// round, makes a code verifier, challenge and state, opens /oauth/authorize, signs in when asked
// (the first round; later rounds reuse the session), approves or denies on the consent page, and
// captures the redirect to the client's redirect_uri (answered in the browser, no listener
// needed). Prints one JSON object per round on stdout:
// {"verifier", "state", "redirect", "consent"}; the caller exchanges the codes.
//
// node pkce.mjs --authorize URL --client-id ID --redirect-uri URI --username U --password P
//               [--scope S] [--rounds N] [--decision approve|deny]
import crypto from 'node:crypto';
import { parseArgs, required, run, signInIfAsked, withPage } from './browser.mjs';

const base64url = (bytes) => Buffer.from(bytes).toString('base64url');

run(async () => {
  const args = parseArgs(process.argv.slice(2));
  const authorize = required(args, 'authorize');
  const clientId = required(args, 'client-id');
  const redirectUri = required(args, 'redirect-uri');
  const username = required(args, 'username');
  const password = required(args, 'password');
  const rounds = Number(args.rounds || 1);
  const decision = args.decision || 'approve';
  await withPage(async (page, context) => {
    const captured = [];
    const isRedirect = (url) => url.toString().startsWith(redirectUri);
    // The client's redirect_uri: answer it inside the browser and note where it was sent.
    await context.route(isRedirect, (route) => {
      captured.push(route.request().url());
      return route.fulfill({ status: 200, contentType: 'text/plain', body: 'code received' });
    });
    for (let round = 0; round < rounds; round++) {
      const verifier = base64url(crypto.randomBytes(48));
      const challenge = base64url(crypto.createHash('sha256').update(verifier).digest());
      const state = base64url(crypto.randomBytes(16));
      const url = new URL(authorize);
      url.search = new URLSearchParams({
        response_type: 'code',
        client_id: clientId,
        redirect_uri: redirectUri,
        state,
        code_challenge: challenge,
        code_challenge_method: 'S256',
        ...(args.scope ? { scope: args.scope } : {}),
      }).toString();
      const before = captured.length;
      await page.goto(url.toString());
      const found = await signInIfAsked(page, username, password, ['#approve', '#error']);
      if (found === '#error') {
        throw new Error(`the authorize page says: ${await page.locator('#error').innerText()}`);
      }
      const consent = await page.locator('body').innerText();
      await page.click(`#${decision}`);
      await page.waitForURL(isRedirect, { timeout: 15000 });
      if (captured.length === before) {
        captured.push(page.url());
      }
      const redirect = captured[captured.length - 1];
      process.stdout.write(`${JSON.stringify({ verifier, state, redirect, consent })}\n`);
    }
  });
});
