// The GraphiQL page of p8fs (GET /graphql from a browser) in headless Chromium, the way a person
// uses it: opens the page, writes the Authorization header into GraphiQL's headers editor, types
// `{ __typename }` into the query editor, clicks the run button and waits for the result pane to
// show `"__typename"`.
//
// node graphiql.mjs --url URL --token TOKEN [--timeout MS]
//
//   --url      the page, e.g. http://127.0.0.1:8080/graphql
//   --token    an access token; sent as `Authorization: Bearer TOKEN` from the headers editor
//   --timeout  how long to wait for each step, in milliseconds (default 20000)
//
// Exits 0 and prints the result pane's JSON on stdout when the query ran. Exits 1 with a message
// on stderr when the page does not render, the query request does not carry the token, the
// result does not come, the page throws, the Content-Security-Policy refuses something, or any
// request goes to a host other than the page's origin (such requests are blocked, not sent).
import { parseArgs, required, run, withPage } from './browser.mjs';

const QUERY = '{ __typename }';

/** The text of the CodeMirror editor inside `selector` (GraphiQL 3 uses CodeMirror 5). */
async function editorValue(page, selector) {
  return page.locator(selector).first().evaluate((element) => {
    const editor = element.querySelector('.CodeMirror');
    return editor && editor.CodeMirror ? editor.CodeMirror.getValue() : null;
  });
}

/** Replaces the text of the CodeMirror editor inside `selector` as a person would. */
async function typeInto(page, selector, text) {
  await page.locator(`${selector} .CodeMirror`).first().click();
  await page.keyboard.press('Control+A');
  await page.keyboard.press('Delete');
  // insertText is one input event, as a paste: CodeMirror takes it verbatim, without the
  // bracket and quote closing or the completion pop-up that key-by-key typing triggers.
  await page.keyboard.insertText(text);
  const value = await editorValue(page, selector);
  if (value !== text) {
    throw new Error(`the editor ${selector} holds ${JSON.stringify(value)} after typing`);
  }
}

run(async () => {
  const args = parseArgs(process.argv.slice(2));
  const url = new URL(required(args, 'url'));
  const token = required(args, 'token');
  const timeout = Number(args.timeout || 20000);
  const origin = url.origin;
  const wsOrigin = `${url.protocol === 'https:' ? 'wss:' : 'ws:'}//${url.host}`;

  await withPage(async (page, context) => {
    page.setDefaultTimeout(timeout);
    const problems = [];
    const foreign = [];
    const queries = [];

    // Every request of the page: same origin goes on, anything else is blocked and noted.
    await context.route('**/*', (route) => {
      const target = route.request().url();
      if (new URL(target).origin === origin) {
        return route.continue();
      }
      foreign.push(target);
      return route.abort('blockedbyclient');
    });
    page.on('websocket', (socket) => {
      if (new URL(socket.url()).origin !== wsOrigin) {
        foreign.push(socket.url());
      }
    });
    page.on('request', (request) => {
      if (request.method() === 'POST' && (request.postData() || '').includes('__typename')) {
        queries.push(request);
      }
    });
    page.on('pageerror', (error) => problems.push(`uncaught: ${error.message}`));
    page.on('console', (message) => {
      const text = message.text();
      if (message.type() === 'error' && /Content.Security.Policy|Refused to/i.test(text)) {
        problems.push(`policy: ${text}`);
      } else if (message.type() === 'error') {
        console.error(`console error (not fatal): ${text}`);
      }
    });
    const check = () => {
      if (foreign.length > 0) {
        throw new Error(`requests to hosts other than ${origin}: ${foreign.join(', ')}`);
      }
      if (problems.length > 0) {
        throw new Error(problems.join('\n'));
      }
    };

    const response = await page.goto(url.href);
    if (!response || !response.ok()) {
      throw new Error(`GET ${url.href} answered ${response ? response.status() : 'nothing'}`);
    }
    try {
      await page.waitForSelector('.graphiql-container .graphiql-query-editor .CodeMirror');
    } catch (error) {
      check();
      throw new Error(`GraphiQL did not render on ${url.href}: ${error.message}`);
    }

    // The headers editor: open its tab (the p8fs page opens it already) and replace the
    // template with the token.
    const headersTab = page.getByRole('button', { name: 'Headers', exact: true });
    if ((await headersTab.count()) > 0) {
      await headersTab.first().click();
    }
    const headers = '.graphiql-editor-tool .graphiql-editor:not(.hidden)';
    await page.waitForSelector(`${headers} .CodeMirror`);
    await typeInto(page, headers, JSON.stringify({ Authorization: `Bearer ${token}` }));

    await typeInto(page, '.graphiql-query-editor', QUERY);
    await page.locator('.graphiql-execute-button').first().click();

    const result = '.graphiql-response';
    try {
      await page.waitForFunction(
        (selector) => {
          const editor = document.querySelector(`${selector} .CodeMirror`);
          return Boolean(editor && editor.CodeMirror && editor.CodeMirror.getValue().includes('"__typename"'));
        },
        result,
        { timeout },
      );
    } catch (error) {
      check();
      const shown = await editorValue(page, result);
      throw new Error(`no "__typename" in the result pane; it shows ${JSON.stringify(shown)}`);
    }
    check();

    if (queries.length === 0) {
      throw new Error('the query was answered but no POST carrying it was seen');
    }
    const sent = (await queries[queries.length - 1].allHeaders()).authorization;
    if (sent !== `Bearer ${token}`) {
      throw new Error(
        `the query was sent with Authorization ${sent === undefined ? 'missing' : 'not the token given'}`,
      );
    }
    process.stdout.write(`${await editorValue(page, result)}\n`);
  });
});
