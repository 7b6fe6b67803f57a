// GraphQL subscriptions of p8fs through `graphql-ws`, the reference JavaScript client of the
// graphql-transport-ws protocol (with the `ws` package as its WebSocket in Node), against a
// running p8fs at /graphql; the Python `gql` clients do the same from graphql_clients.py.
//
// node graphql_ws.mjs --url BASE --token TOKEN --limited-token TOKEN --expiring-token TOKEN
//
//   --url             the main listener, e.g. http://127.0.0.1:8080
//   --token           a token of tenant A with kv:read, kv:write, graph:read and graph:write
//   --limited-token   tenant A's token with kv:read and kv:write only
//   --expiring-token  tenant A's kv:read token that expires within seconds
//
// Checks, each printed as `ok: ...`:
// - a key-value change made through the REST API (PUT /v1/kv/KEY) arrives on a subscription
//   whose token is in the connection_init payload, with its cursor, op, kind, key and version;
// - `prefix` filters out a key outside it, cursors increase, and without `kinds` a node made
//   through a GraphQL mutation arrives too, as kind NODE with its id;
// - resuming with `after` a cursor gives the changes after it only, in order, then goes on live;
//   `kinds: [KV]` leaves the node out and `kinds: [NODE]` gives only the node;
// - `after: "abc"` is a BAD_USER_INPUT error naming `after`, and a kind beyond the token's
//   scopes is FORBIDDEN;
// - a subscription opened before its token expires ends with an UNAUTHENTICATED error saying
//   so, once the token has expired (its exp claim), not before;
// - a connection_init without a token, or with one that is not valid, is refused: the server
//   closes the socket with the reason and the client reports the close to the subscription.
//
// Exits 1 with `FAIL: ...` on stderr at the first failure; prints
// `graphql-ws: all checks passed` last when every check held.
import { parseArgs } from 'node:util';

import { createClient } from 'graphql-ws';
import WebSocket from 'ws';

/** How long a subscription may take to deliver a change, in milliseconds. */
const DELIVERY_TIMEOUT = 15_000;
/** How long the expiring token's subscription may run before it must have ended. */
const EXPIRY_TIMEOUT = 60_000;
/** The subjects this script writes start with this (a key, a node id). */
const PREFIX = 'gqlws-';

const CHANGES = `subscription($prefix: String, $after: String, $kinds: [ChangeKind!]) {
  changes(prefix: $prefix, after: $after, kinds: $kinds) { cursor op kind key id version }
}`;

function fail(message) {
  process.stderr.write(`FAIL: ${message}\n`);
  process.exit(1);
}

function check(condition, message) {
  if (!condition) fail(message);
  console.log(`ok: ${message}`);
}

const show = (value) => JSON.stringify(value);

/** Deep equality of JSON values (key order ignored). */
function same(a, b) {
  if (a === b) return true;
  if (typeof a !== 'object' || typeof b !== 'object' || a === null || b === null) return false;
  if (Array.isArray(a) !== Array.isArray(b)) return false;
  const keys = Object.keys(a);
  return (
    keys.length === Object.keys(b).length &&
    keys.every((key) => Object.hasOwn(b, key) && same(a[key], b[key]))
  );
}

/** What a subscription event is, for messages. */
function describe(event) {
  if (event.result) return `a result ${show(event.result)}`;
  if (event.complete) return 'its completion';
  const error = event.error;
  if (Array.isArray(error)) return `errors ${show(error)}`;
  if (error && typeof error === 'object' && 'code' in error && 'reason' in error) {
    return `the socket's close (${error.code} ${show(error.reason)})`;
  }
  return `the error ${error}`;
}

class Env {
  constructor(args) {
    this.base = args.url.replace(/\/+$/, '');
    this.graphql = `${this.base}/graphql`;
    this.websocket = `ws${this.graphql.slice('http'.length)}`;
    this.token = args.token;
    this.limitedToken = args['limited-token'];
    this.expiringToken = args['expiring-token'];
  }

  /** A graphql-ws client whose connection_init carries `token` (no payload when null). */
  client(token) {
    return createClient({
      url: this.websocket,
      webSocketImpl: WebSocket,
      connectionParams: token === null ? undefined : { Authorization: `Bearer ${token}` },
      connectionAckWaitTimeout: 10_000,
      // A refusal must reach the subscription, not be retried.
      retryAttempts: 0,
    });
  }

  /** PUT /v1/kv/KEY with a JSON body through the REST API; the written version. */
  async restPut(key, value) {
    const path = key.split('/').map(encodeURIComponent).join('/');
    const response = await fetch(`${this.base}/v1/kv/${path}`, {
      method: 'PUT',
      headers: { Authorization: `Bearer ${this.token}`, 'Content-Type': 'application/json' },
      body: JSON.stringify(value),
      signal: AbortSignal.timeout(30_000),
    });
    const text = await response.text();
    if (!response.ok) fail(`REST PUT ${key}: ${response.status} ${text}`);
    const body = JSON.parse(text);
    if (body.key !== key || !body.version) fail(`REST PUT ${key} answered ${text}`);
    return String(body.version);
  }

  /** A GraphQL query or mutation over HTTP with the full token; its data. */
  async query(query, variables) {
    const response = await fetch(this.graphql, {
      method: 'POST',
      headers: {
        Authorization: `Bearer ${this.token}`,
        'Content-Type': 'application/json',
        Accept: 'application/graphql-response+json',
      },
      body: JSON.stringify({ query, variables }),
      signal: AbortSignal.timeout(30_000),
    });
    const text = await response.text();
    const body = response.ok ? JSON.parse(text) : null;
    if (!body || body.errors || !body.data) fail(`POST /graphql ${query}: ${response.status} ${text}`);
    return body.data;
  }
}

/** A running subscription whose events (results, errors, completion) queue up for a reader. */
class Subscription {
  constructor(client, variables, query = CHANGES) {
    this.events = [];
    this.waiters = [];
    this.dispose = client.subscribe(
      { query, variables },
      {
        next: (result) => this.push({ result }),
        error: (error) => this.push({ error }),
        complete: () => this.push({ complete: true }),
      },
    );
  }

  push(event) {
    const waiter = this.waiters.shift();
    if (waiter) waiter(event);
    else this.events.push(event);
  }

  /** The next event, or null when none comes within `ms`. */
  take(ms) {
    if (this.events.length) return Promise.resolve(this.events.shift());
    return new Promise((resolve) => {
      const waiter = (event) => {
        clearTimeout(timer);
        resolve(event);
      };
      const timer = setTimeout(() => {
        this.waiters.splice(this.waiters.indexOf(waiter), 1);
        resolve(null);
      }, ms);
      this.waiters.push(waiter);
    });
  }

  /** The next change; fails unless one comes within `ms`. */
  async next(what, ms = DELIVERY_TIMEOUT) {
    const event = await this.take(ms);
    if (event === null) fail(`${what}: no change within ${ms} ms`);
    const result = event.result;
    if (!result || result.errors || !result.data || !result.data.changes) {
      fail(`${what}: the subscription gave ${describe(event)}`);
    }
    return result.data.changes;
  }

  /** Checks that nothing comes within `ms`. */
  async nothing(ms, what) {
    const event = await this.take(ms);
    if (event !== null) fail(`${what}: got ${describe(event)}`);
    console.log(`ok: ${what}`);
  }

  /** The GraphQL errors the subscription ends with (in a result, then its completion, or as an
   * error message); fails on a change, a close of the socket or silence. */
  async failure(what, ms = DELIVERY_TIMEOUT) {
    const event = await this.take(ms);
    if (event === null) fail(`${what}: the subscription did not end within ${ms} ms`);
    if (Array.isArray(event.error)) return event.error;
    if (event.result && event.result.errors && !(event.result.data && event.result.data.changes)) {
      const end = await this.take(ms);
      if (!end || !end.complete) fail(`${what}: after its errors came ${end ? describe(end) : 'nothing'}`);
      return event.result.errors;
    }
    fail(`${what}: expected errors, got ${describe(event)}`);
  }
}

const codes = (errors) => errors.map((error) => (error.extensions || {}).code);

/** Waits until `subscription` delivers: writes probe keys through REST until one arrives (a
 * subscription starts at the log's head when the server gets it, which no message
 * acknowledges), then takes the probes written after it, so the next change is the caller's. */
async function live(env, subscription) {
  const written = [];
  let first = null;
  for (let n = 0; n < 40 && first === null; n += 1) {
    const key = `${PREFIX}probe-${n}`;
    written.push([key, await env.restPut(key, n)]);
    first = await subscription.take(500);
  }
  if (first === null) fail('the subscription delivered none of 40 probe writes');
  if (!first.result || !first.result.data) fail(`the subscription gave ${describe(first)}`);
  const keys = written.map(([key]) => key);
  const change = first.result.data.changes;
  check(keys.includes(change.key), `graphql-ws delivers a probe write made through REST: ${show(change)}`);
  for (const [key, version] of written.slice(keys.indexOf(change.key) + 1)) {
    const probe = await subscription.next(`probe ${key}`);
    check(probe.key === key && probe.version === version, `the probes arrive in commit order: ${key}`);
  }
}

/** The `exp` claim of a JWT, in milliseconds since the Unix epoch. */
function expiresAt(token) {
  const claims = JSON.parse(Buffer.from(token.split('.')[1] || '', 'base64url').toString());
  if (typeof claims.exp !== 'number') fail(`the expiring token has no exp claim: ${show(claims)}`);
  return claims.exp * 1000;
}

/** Follows the changes with the expiring token until the subscription ends: its errors and
 * when they came. */
async function untilExpiry(env) {
  const client = env.client(env.expiringToken);
  const subscription = new Subscription(client, { prefix: 'never/' });
  const errors = await subscription.failure("the expiring token's subscription", EXPIRY_TIMEOUT);
  const at = Date.now();
  await client.dispose();
  return { errors, at };
}

async function main() {
  const { values: args } = parseArgs({
    options: {
      url: { type: 'string' },
      token: { type: 'string' },
      'limited-token': { type: 'string' },
      'expiring-token': { type: 'string' },
    },
  });
  for (const name of ['url', 'token', 'limited-token', 'expiring-token']) {
    if (!args[name]) fail(`--${name} is required`);
  }
  const env = new Env(args);
  // Runs beside the rest: the token expires seconds from now.
  const expires = expiresAt(env.expiringToken);
  if (Date.now() >= expires) fail('the expiring token expired before its subscription opened');
  const expiry = untilExpiry(env);

  const client = env.client(env.token);
  const all = new Subscription(client, { prefix: PREFIX });
  await live(env, all);

  const versionA = await env.restPut(`${PREFIX}a`, { n: 'a' });
  const changeA = await all.next('the change of a');
  check(
    same(changeA, {
      cursor: changeA.cursor,
      op: 'PUT',
      kind: 'KV',
      key: `${PREFIX}a`,
      id: null,
      version: versionA,
    }),
    `a REST PUT arrives as a change: ${show(changeA)}`,
  );
  // Outside the prefix: filtered out.
  await env.restPut('elsewhere-gqlws/x', 1);
  const versionB = await env.restPut(`${PREFIX}b`, { n: 'b' });
  const changeB = await all.next('the change of b');
  check(
    changeB.key === `${PREFIX}b` && changeB.version === versionB,
    `the next change is b's (the key outside the prefix is not sent): ${show(changeB)}`,
  );
  check(BigInt(changeB.cursor) > BigInt(changeA.cursor), 'cursors increase');
  const node = await env.query(
    'mutation($id: String!, $p: JSON) { putNode(id: $id, label: "probe", properties: $p) { id } }',
    { id: `${PREFIX}node`, p: { n: 1 } },
  );
  check(node.putNode.id === `${PREFIX}node`, `putNode over HTTP: ${show(node)}`);
  const changeNode = await all.next('the change of the node');
  check(
    same(changeNode, {
      cursor: changeNode.cursor,
      op: 'PUT',
      kind: 'NODE',
      key: null,
      id: `${PREFIX}node`,
      version: null,
    }),
    `without kinds, a node made through GraphQL arrives as a NODE change: ${show(changeNode)}`,
  );
  all.dispose();

  // Resuming after a's cursor, two subscriptions on one connection: KV only, then NODE only.
  const kv = new Subscription(client, { prefix: PREFIX, after: changeA.cursor, kinds: ['KV'] });
  const resumed = await kv.next("the change after a's cursor");
  check(same(resumed, changeB), `resuming after a's cursor gives b's change, not a's: ${show(resumed)}`);
  await kv.nothing(1000, 'kinds: [KV] leaves the node out: nothing more after b until the next write');
  const versionC = await env.restPut(`${PREFIX}c`, { n: 'c' });
  const changeC = await kv.next('the change of c');
  check(
    changeC.key === `${PREFIX}c` && changeC.version === versionC && changeC.op === 'PUT',
    `the resumed subscription goes on live: ${show(changeC)}`,
  );
  const nodes = new Subscription(client, { prefix: PREFIX, after: changeA.cursor, kinds: ['NODE'] });
  const onlyNode = await nodes.next('the NODE change after a');
  check(same(onlyNode, changeNode), `kinds: [NODE] after a's cursor gives the node's change only: ${show(onlyNode)}`);
  await nodes.nothing(1000, 'kinds: [NODE] leaves b and c out');
  kv.dispose();
  nodes.dispose();

  // A cursor that is not one: BAD_USER_INPUT naming `after`, before anything is followed.
  const bad = new Subscription(client, { prefix: PREFIX, after: 'abc' });
  const badErrors = await bad.failure('a subscription after a bad cursor');
  check(
    same(codes(badErrors), ['BAD_USER_INPUT']) && badErrors[0].extensions.field === 'after',
    `changes(after: "abc") is BAD_USER_INPUT naming after (${show(badErrors)})`,
  );
  await client.dispose();

  // A kind the token may not read: FORBIDDEN.
  const limitedClient = env.client(env.limitedToken);
  const forbidden = new Subscription(limitedClient, { kinds: ['NODE'] });
  const forbiddenErrors = await forbidden.failure('a subscription to NODE without graph:read');
  check(
    same(codes(forbiddenErrors), ['FORBIDDEN']),
    `changes(kinds: [NODE]) without graph:read is FORBIDDEN (${show(forbiddenErrors)})`,
  );
  await limitedClient.dispose();

  const { errors: expired, at: endedAt } = await expiry;
  check(
    same(codes(expired), ['UNAUTHENTICATED']) && /expired/.test(expired[0].message),
    `a subscription ends with UNAUTHENTICATED when its token expires (${show(expired)})`,
  );
  // exp is in whole seconds: a second's tolerance.
  check(
    endedAt >= expires - 1000,
    `it ended when the token expired, not before (${endedAt - expires} ms after exp)`,
  );

  // No token, or one that is not valid, in connection_init: the server closes the socket with
  // the reason, and graphql-ws hands the close to the subscription instead of a change.
  for (const [token, why] of [
    [null, 'connection_init must carry the bearer token'],
    ['not-a-token', 'unauthorized'],
  ]) {
    const refusedClient = env.client(token);
    const refused = new Subscription(refusedClient, { prefix: PREFIX });
    const event = await refused.take(DELIVERY_TIMEOUT);
    const close = event && event.error;
    check(
      close && typeof close === 'object' && 'code' in close && close.code !== 1000 && String(close.reason).includes(why),
      `a connection with token ${show(token)} is refused: ${event ? describe(event) : 'nothing within the timeout'}`,
    );
    await refusedClient.dispose();
  }

  console.log('graphql-ws: all checks passed');
  process.exit(0);
}

main().catch((error) => fail(error && error.stack ? error.stack : String(error)));
