// The browser half of the device flow (RFC 8628) in headless Chromium: opens the verification
// page, signs in, enters the user code if given (otherwise the link carried it), and clicks
// approve or deny. Prints one JSON object on stdout: the confirmation page's text and the result.
//
// node device.mjs --url VERIFICATION_URI[_COMPLETE] --username U --password P
//                 [--code XXXX-XXXX] [--decision approve|deny]
import { parseArgs, required, run, signInIfAsked, waitForAny, withPage } from './browser.mjs';

run(async () => {
  const args = parseArgs(process.argv.slice(2));
  const url = required(args, 'url');
  const username = required(args, 'username');
  const password = required(args, 'password');
  const decision = args.decision || 'approve';
  if (decision !== 'approve' && decision !== 'deny') {
    throw new Error(`--decision must be approve or deny, not ${decision}`);
  }
  const output = await withPage(async (page) => {
    await page.goto(url);
    let found = await signInIfAsked(page, username, password, ['#user_code', '#approve', '#error']);
    if (found === '#user_code') {
      if (!args.code) {
        throw new Error('the page asks for the code, and none was given');
      }
      await page.fill('#user_code', args.code);
      await page.click('#continue');
      found = await waitForAny(page, ['#approve', '#error']);
    }
    if (found === '#error') {
      throw new Error(`the device page says: ${await page.locator('#error').innerText()}`);
    }
    const confirmation = await page.locator('body').innerText();
    await page.click(`#${decision}`);
    await waitForAny(page, ['#result', '#error']);
    if ((await page.locator('#error').count()) > 0) {
      throw new Error(`after ${decision}: ${await page.locator('#error').innerText()}`);
    }
    const result = await page.locator('#result').innerText();
    return { confirmation, result };
  });
  process.stdout.write(`${JSON.stringify(output)}\n`);
});
