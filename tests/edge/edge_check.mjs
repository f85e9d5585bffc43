#!/usr/bin/env node
// edge_check.mjs: drives a running natsgw-edge over HTTP the way a client
// outside NATS does (Node's built-in fetch, no npm package), against the
// example services: calls, publishes, server-sent event subscriptions,
// probes and metrics, and every error path the edge promises.
//
//   node tests/edge/edge_check.mjs <edge url> <token> [options]
//
// Options (each names something the driver, tests/edge/edge_e2e_test.cc,
// started):
//   --discovery-url URL   a second edge started without --schema, allowing
//                         '>' on every route and no token
//   --metrics-url URL     the first edge's metrics endpoint (/metrics)
//   --user-log PATH       user-service's output, where a call's trace ID
//                         must show up
//   --user-service-pid N  stopped (SIGSTOP) for the timeout check, then
//                         continued (SIGCONT)
//   --email-service-pid N killed (SIGKILL) for the 503 check, last
//   --max-body-bytes N    the first edge's --max_body_bytes
//   --max-streams N       the first edge's --max_streams
//   --latency-calls N     calls to echo.Echo for the latency figures
//   --phase all|main|gone "gone" runs only the 503 check (a service that is
//                         gone); "main" everything else; default both. A
//                         subscriber on '>' (the driver's tap) is interest
//                         in every subject, so NATS answers "no responders"
//                         only once it is gone: the driver runs the phases
//                         around it.
//
// Output: one line per failed check, a summary line
//   EDGE_CHECK_SUMMARY {"register_requests":N,...}
// for the driver (which compares it with what a tap subscriber on '>' saw),
// then "edge_check: OK (<n> checks)" and exit status 0, or exit status 1.
// A watchdog ends the script with status 2 after 60 s.
import { randomBytes } from 'node:crypto';
import { readdirSync, readFileSync } from 'node:fs';

const watchdog = setTimeout(() => {
  console.error('edge_check: watchdog: still running after 60 s');
  process.exit(2);
}, 60_000);

// ---- arguments ----
const positional = [];
const options = {};
for (let i = 2; i < process.argv.length; ++i) {
  const arg = process.argv[i];
  if (arg.startsWith('--')) {
    options[arg.slice(2)] = process.argv[++i];
  } else {
    positional.push(arg);
  }
}
if (positional.length !== 2) {
  console.error('usage: edge_check.mjs <edge url> <token> [--option value]...');
  process.exit(2);
}
const [base, token] = positional;
const discovery = options['discovery-url'];
const maxBody = Number(options['max-body-bytes'] ?? 65536);
const maxStreams = Number(options['max-streams'] ?? 3);
const phase = options.phase ?? 'all';

// ---- checks ----
let checks = 0;
const failures = [];
function check(name, ok, detail = '') {
  ++checks;
  if (!ok) {
    failures.push(name);
    console.log(`FAIL ${name}${detail ? `: ${detail}` : ''}`);
  }
  return ok;
}
function show(x) {
  return typeof x === 'string' ? x.slice(0, 400) : JSON.stringify(x)?.slice(0, 400);
}

const auth = { Authorization: `Bearer ${token}` };
const json = { 'Content-Type': 'application/json' };
const summary = { register_requests: 0 };

// One HTTP exchange; the body is parsed as JSON when it is JSON.
async function http(method, url, { headers = {}, body, ...rest } = {}) {
  const response = await fetch(url, { method, headers, body, ...rest });
  const text = await response.text();
  let parsed = null;
  try {
    parsed = JSON.parse(text);
  } catch {
    // not JSON: kept as text
  }
  return { status: response.status, headers: response.headers, text, json: parsed };
}
const post = (url, body, headers = {}) =>
  http('POST', url, {
    headers: { ...auth, ...json, ...headers },
    body: typeof body === 'string' ? body : JSON.stringify(body),
  });

// Expects an error response: status, JSON body with `code`, and a message
// matching `message` (a RegExp) when given.
function expectError(name, r, status, code, message) {
  check(`${name}: HTTP ${status}`, r.status === status, `got ${r.status} ${show(r.text)}`);
  check(`${name}: JSON error body`, r.json !== null && r.json.code === code,
        `got ${show(r.text)}`);
  if (message) {
    check(`${name}: message`, r.json !== null && message.test(r.json.message ?? ''),
          `${show(r.json?.message)} does not match ${message}`);
  }
  check(`${name}: content type`,
        (r.headers.get('content-type') ?? '').startsWith('application/json'));
}

const newTraceId = () => randomBytes(16).toString('hex');
const newSpanId = () => randomBytes(8).toString('hex');
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

async function eventually(what, predicate, ms = 5000) {
  const deadline = Date.now() + ms;
  while (Date.now() < deadline) {
    if (await predicate()) return true;
    await sleep(20);
  }
  return check(what, false, `not within ${ms} ms`);
}

// A server-sent event stream: opened with fetch, parsed as it arrives.
class EventStream {
  constructor(url, headers = auth) {
    this.url = url;
    this.headers = headers;
    this.events = [];
    this.comments = [];
    this.ended = false;
    this.controller = new AbortController();
  }
  async open() {
    this.response = await fetch(this.url, {
      headers: this.headers,
      signal: this.controller.signal,
    });
    if (this.response.status !== 200) {
      this.text = await this.response.text();
      return this.response.status;
    }
    this.reading = this.read();
    return 200;
  }
  async read() {
    const decoder = new TextDecoder();
    let buffer = '';
    try {
      for await (const chunk of this.response.body) {
        buffer += decoder.decode(chunk, { stream: true });
        let end;
        while ((end = buffer.indexOf('\n\n')) >= 0) {
          this.parse(buffer.slice(0, end));
          buffer = buffer.slice(end + 2);
        }
      }
    } catch {
      // aborted
    }
    this.ended = true;
  }
  parse(block) {
    const event = { event: 'message', data: [] };
    let fields = 0;
    for (const line of block.split('\n')) {
      if (line.startsWith(':')) {
        this.comments.push(line.slice(1).trim());
        continue;
      }
      const colon = line.indexOf(':');
      const field = colon < 0 ? line : line.slice(0, colon);
      const value = colon < 0 ? '' : line.slice(colon + 1).replace(/^ /, '');
      ++fields;
      if (field === 'data') event.data.push(value);
      else event[field] = value;
    }
    if (fields === 0) return;
    event.data = event.data.join('\n');
    try {
      event.json = JSON.parse(event.data);
    } catch {
      event.json = null;
    }
    this.events.push(event);
  }
  async waitFor(what, predicate, ms = 5000) {
    let found;
    await eventually(what, () => (found = this.events.find(predicate)) !== undefined, ms);
    return found;
  }
  close() {
    this.controller.abort();
  }
}

// Prometheus text: the value of the series `name{labels}` (labels in any
// order), or undefined.
function metric(text, name, labels = {}) {
  for (const line of text.split('\n')) {
    const m = line.match(/^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{([^}]*)\})? (\S+)$/);
    if (!m || m[1] !== name) continue;
    const have = {};
    for (const pair of (m[3] ?? '').matchAll(/([a-zA-Z_]+)="([^"]*)"/g)) have[pair[1]] = pair[2];
    if (Object.entries(labels).every(([k, v]) => have[k] === v)) return Number(m[4]);
  }
  return undefined;
}

function percentile(sorted, p) {
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))];
}

async function main() {
  const streams = [];
  try {
    await run(streams);
  } finally {
    for (const s of streams) s.close();
  }
}

const call = (subject, query = '') => `${base}/v1/call/${subject}${query}`;

async function run(streams) {
  if (phase !== 'gone') await runMain(streams);
  for (const s of streams) s.close();
  if (phase !== 'main') await runGone();
}

async function runMain(streams) {
  let r;

  // ---- probes ----
  r = await http('GET', `${base}/healthz`);
  check('healthz 200', r.status === 200 && r.json?.status === 'ok', show(r.text));
  r = await http('GET', `${base}/readyz`);
  check('readyz 200', r.status === 200 && r.json?.status === 'ready', show(r.text));

  // ---- authentication ----
  r = await http('POST', call('users.RegisterUser'), {
    headers: json, body: '{"email":"nobody@example.com"}',
  });
  expectError('no token', r, 401, 'UNAUTHENTICATED', /bearer token is required/);
  check('no token: WWW-Authenticate',
        /^Bearer realm=/.test(r.headers.get('www-authenticate') ?? ''),
        show(r.headers.get('www-authenticate')));
  r = await http('POST', call('users.RegisterUser'), {
    headers: { ...json, Authorization: `Bearer ${token}x` },
    body: '{"email":"nobody@example.com"}',
  });
  expectError('wrong token', r, 401, 'UNAUTHENTICATED', /not valid/);
  check('wrong token: invalid_token',
        /error="invalid_token"/.test(r.headers.get('www-authenticate') ?? ''));
  r = await http('GET', `${base}/v1/subscribe/users.events.%3E`, {
    headers: { Authorization: 'Basic dXNlcjpwYXNz' },
  });
  expectError('subscribe with Basic auth', r, 401, 'UNAUTHENTICATED');

  // ---- streams: open the maximum, one more is refused ----
  const users = new EventStream(`${base}/v1/subscribe/users.events.>`);
  const email = new EventStream(`${base}/v1/subscribe/email.events.*`);
  // edge.test.* subjects name no event type: the stream names it.
  const test = new EventStream(
    `${base}/v1/subscribe/edge.test.%3E?type=natsgw.users.UserRegistered`);
  streams.push(users, email, test);
  for (const [name, s] of [['users', users], ['email', email], ['test', test]]) {
    const status = await s.open();
    check(`stream ${name}: 200`, status === 200, `${status} ${show(s.text)}`);
    check(`stream ${name}: text/event-stream`,
          (s.response.headers.get('content-type') ?? '') === 'text/event-stream');
    await eventually(`stream ${name}: subscribed comment`,
                     () => s.comments.some((c) => c.startsWith('subscribed to ')));
  }
  check('three streams is the test edge\'s maximum', maxStreams === 3);
  const extra = new EventStream(`${base}/v1/subscribe/users.events.UserRegistered`);
  r = { status: await extra.open() };
  check('stream beyond --max_streams: 429', r.status === 429, `${r.status}`);
  check('stream beyond --max_streams: RESOURCE_EXHAUSTED',
        /RESOURCE_EXHAUSTED/.test(extra.text ?? ''), show(extra.text));

  // ---- a call continuing the caller's trace ----
  const trace = newTraceId();
  const parentSpan = newSpanId();
  const ada = `ada-${randomBytes(4).toString('hex')}@example.com`;
  r = await post(call('users.RegisterUser'), { email: ada, display_name: 'Ada' },
                 { traceparent: `00-${trace}-${parentSpan}-01`, tracestate: 'vendor=x' });
  ++summary.register_requests;
  check('call: 200', r.status === 200, `${r.status} ${show(r.text)}`);
  check('call: application/json',
        (r.headers.get('content-type') ?? '').startsWith('application/json'));
  const userId = r.json?.user_id ?? '';
  check('call: reply as JSON', /^u-[0-9a-f]{12}$/.test(userId), show(r.text));
  check('call: created_at_unix_ms', Number.isInteger(r.json?.created_at_unix_ms));
  const traceparent = r.headers.get('traceparent') ?? '';
  check('call: traceparent continues the trace',
        new RegExp(`^00-${trace}-[0-9a-f]{16}-01$`).test(traceparent) &&
        !traceparent.includes(parentSpan), traceparent);
  check('call: Natsgw-Trace-Id', r.headers.get('natsgw-trace-id') === trace);
  check('call: Server-Timing', /nats;dur=\d+(\.\d+)?/.test(r.headers.get('server-timing') ?? ''),
        show(r.headers.get('server-timing')));
  summary.trace_id = trace;

  // The event and the e-mail on the same trace, through the streams.
  const registered = await users.waitFor('stream users: UserRegistered',
    (e) => e.json?.data?.email === ada);
  if (registered) {
    check('event: SSE event name', registered.event === 'message');
    check('event: subject', registered.json.subject === 'users.events.UserRegistered');
    check('event: trace ID', registered.json.trace_id === trace, show(registered.json));
    check('event: id is the message ID',
          registered.id === registered.json.message_id && registered.id.length > 0);
    check('event: type', registered.json.type === 'natsgw.users.UserRegistered');
    check('event: decoded', registered.json.data.user_id === userId);
    check('event: latency_us', Number.isInteger(registered.json.latency_us) &&
          registered.json.latency_us >= 0);
  }
  const sent = await email.waitFor('stream email: WelcomeEmailSent',
    (e) => e.json?.data?.user_id === userId);
  if (sent) {
    check('e-mail event: trace ID', sent.json.trace_id === trace, show(sent.json));
    check('e-mail event: subject', sent.json.subject === 'email.events.WelcomeEmailSent');
    check('e-mail event: decoded', sent.json.data.email === ada);
  }
  if (options['user-log']) {
    await eventually('user-service printed the caller\'s trace ID', () =>
      readFileSync(options['user-log'], 'utf8').includes(`trace=${trace} RegisterUser ${ada}`));
  }

  // An invalid traceparent restarts the trace (W3C) instead of failing.
  r = await post(call('users.RegisterUser'), { email: `bad-trace-${trace}@example.com` },
                 { traceparent: '00-not-a-trace-01' });
  ++summary.register_requests;
  check('invalid traceparent: 200', r.status === 200, `${r.status} ${show(r.text)}`);
  check('invalid traceparent: a new trace',
        /^[0-9a-f]{32}$/.test(r.headers.get('natsgw-trace-id') ?? '') &&
        r.headers.get('natsgw-trace-id') !== trace);

  // ---- publish ----
  const pubTrace = newTraceId();
  r = await post(`${base}/v1/publish/edge.test.Ping?type=natsgw.users.UserRegistered`,
                 { user_id: 'u-edge', email: 'pub@example.com' },
                 { traceparent: `00-${pubTrace}-${newSpanId()}-01`,
                   'Natsgw-Header-Tenant': 'acme' });
  check('publish: 202', r.status === 202, `${r.status} ${show(r.text)}`);
  check('publish: trace_id', r.json?.trace_id === pubTrace, show(r.text));
  check('publish: message_id', typeof r.json?.message_id === 'string' &&
        r.json.message_id.length > 0);
  const published = await test.waitFor('stream test: the published event',
    (e) => e.id === r.json?.message_id);
  if (published) {
    check('published event: trace ID', published.json.trace_id === pubTrace);
    check('published event: decoded with ?type',
          published.json.data?.user_id === 'u-edge', show(published.json));
  }
  // The event type from the subject: <prefix>.events.<Event>. An HTTP
  // header that is not Natsgw-Header-* never reaches NATS, whatever its
  // name: X-Inbox-Id is no reply attempt.
  r = await post(`${base}/v1/publish/edge.test.events.UserRegistered`,
                 { user_id: 'u-edge-2', email: 'pub2@example.com' },
                 { 'X-Inbox-Id': 'inbox-42' });
  check('publish (type from subject): 202', r.status === 202, `${r.status} ${show(r.text)}`);
  const typed = await test.waitFor('stream test: the second published event',
    (e) => e.id === r.json?.message_id);
  if (typed) check('second event: decoded', typed.json.data?.user_id === 'u-edge-2');

  // ---- the discovery-only edge: no --schema, '>' allowed, still no reserved subjects ----
  if (discovery) {
    const open = { 'Content-Type': 'application/json' };
    r = await http('POST', `${discovery}/v1/call/users.RegisterUser`, {
      headers: open, body: JSON.stringify({ email: `disc-${trace}@example.com` }),
    });
    ++summary.register_requests;
    check('discovery: call with the schema from $SRV.INFO: 200', r.status === 200,
          `${r.status} ${show(r.text)}`);
    check('discovery: reply decoded', /^u-[0-9a-f]{12}$/.test(r.json?.user_id ?? ''),
          show(r.text));
    const reserved = [
      ['POST', '/v1/call/$SRV.PING'],
      ['POST', '/v1/call/$SYS.REQ.SERVER.PING'],
      ['POST', '/v1/call/_INBOX.edge-check'],
      ['POST', '/v1/publish/$JS.API.STREAM.DELETE.USERS?type=natsgw.users.UserRegistered'],
      ['POST', '/v1/publish/$KV.email-service-idempotency.x?type=natsgw.users.UserRegistered'],
      ['GET', '/v1/subscribe/_INBOX.%3E'],
      ['GET', '/v1/subscribe/$SYS.%3E'],
    ];
    for (const [method, path] of reserved) {
      r = await http(method, `${discovery}${path}`, {
        headers: open, body: method === 'POST' ? '{"user_id":"u","email":"e"}' : undefined,
      });
      expectError(`reserved ${path} with allow-list '>'`, r, 403, 'PERMISSION_DENIED',
                  /reserved/);
    }
  }

  // ---- subjects the allow-lists do not cover ----
  r = await post(call('users.DeleteAllUsers'), {});
  expectError('call not allowed', r, 403, 'PERMISSION_DENIED', /not allowed for calls/);
  r = await post(`${base}/v1/publish/edge.other.x?type=natsgw.users.UserRegistered`, {});
  expectError('publish not allowed', r, 403, 'PERMISSION_DENIED', /not allowed for publishes/);
  r = await http('GET', `${base}/v1/subscribe/%3E`, { headers: auth });
  expectError('subscribe wider than allowed', r, 403, 'PERMISSION_DENIED');
  r = await post(call('$SRV.STATS'), {});
  expectError('reserved subject', r, 403, 'PERMISSION_DENIED', /reserved/);
  r = await post(call('users..RegisterUser'), {});
  expectError('invalid subject', r, 400, 'INVALID_ARGUMENT', /empty token/);

  // ---- bodies, headers and parameters that never reach NATS ----
  // On calls to users.RegisterUser (the tap counts its requests) and on
  // publishes to edge.refused.* (the tap must see none).
  const refused = `${base}/v1/publish/edge.refused.x?type=natsgw.users.UserRegistered`;
  const cases = [
    ['bad JSON', '{"email": "x@example.com",', {}, 400, /line 1, column \d+/],
    ['unknown field', '{"email": "x@example.com", "nope": 1}', {}, 400, /unknown field: nope/],
    ['missing required field', '{"display_name": "x"}', {}, 400, /required field is missing: email/],
    ['reserved header', '{"email":"x@example.com"}', { 'Natsgw-Header-Nats-Msg-Id': 'x' }, 400,
     /reserved/],
    ['trace header as application header', '{"email":"x@example.com"}',
     { 'Natsgw-Header-traceparent': `00-${trace}-${parentSpan}-01` }, 400, /reserved/],
    ['JetStream header', '{"email":"x@example.com"}',
     { 'Natsgw-Header-Nats-Expected-Stream': 'USERS' }, 400, /Nats-/],
    ['reply subject header', '{"email":"x@example.com"}',
     { 'Natsgw-Header-Reply-To': '_INBOX.edge-check' }, 400, /reply subjects/],
    ['reply subject as NATS header', '{"email":"x@example.com"}',
     { 'Natsgw-Header-Reply': '_INBOX.edge-check' }, 400, /reply subjects/],
  ];
  for (const [name, body, headers, status, message] of cases) {
    r = await post(call('users.RegisterUser'), body, headers);
    expectError(`call: ${name}`, r, status, 'INVALID_ARGUMENT', message);
    const pubBody = body.replace('"email"', '"user_id":"u","email"');
    r = await post(refused, name === 'missing required field' ? '{"user_id":"u"}' : pubBody,
                   headers);
    expectError(`publish: ${name}`, r, status, 'INVALID_ARGUMENT', message);
  }
  for (const query of ['?reply=_INBOX.edge-check', '?reply_to=_INBOX.edge-check',
                       '?inbox=x']) {
    r = await post(call('users.RegisterUser', query), { email: 'x@example.com' });
    expectError(`call ${query}`, r, 400, 'INVALID_ARGUMENT', /reply subjects/);
  }
  r = await post(call('users.RegisterUser', '?timeout=5'), { email: 'x@example.com' });
  expectError('unknown query parameter', r, 400, 'INVALID_ARGUMENT', /timeout_ms/);
  r = await post(call('users.RegisterUser', '?timeout_ms=soon'), { email: 'x@example.com' });
  expectError('bad timeout_ms', r, 400, 'INVALID_ARGUMENT', /timeout_ms/);
  // Too large: declared (Content-Length) and streamed (chunked).
  const big = JSON.stringify({ email: 'x@example.com', display_name: 'x'.repeat(maxBody) });
  for (const url of [call('users.RegisterUser'), refused]) {
    r = await post(url, big);
    expectError(`413 (Content-Length) ${url}`, r, 413, 'INVALID_ARGUMENT', /limit is/);
    const chunks = new ReadableStream({
      start(controller) {
        for (let i = 0; i < big.length; i += 4096) {
          controller.enqueue(new TextEncoder().encode(big.slice(i, i + 4096)));
        }
        controller.close();
      },
    });
    r = await http('POST', url, {
      headers: { ...auth, ...json }, body: chunks, duplex: 'half',
    });
    expectError(`413 (chunked) ${url}`, r, 413, 'INVALID_ARGUMENT', /more than/);
  }
  for (const [name, type] of [['text/plain', 'text/plain'],
                              ['form', 'application/x-www-form-urlencoded']]) {
    r = await http('POST', call('users.RegisterUser'), {
      headers: { ...auth, 'Content-Type': type }, body: '{"email":"x@example.com"}',
    });
    expectError(`415 ${name}`, r, 415, 'INVALID_ARGUMENT', /application\/json/);
  }

  // ---- routes and methods ----
  r = await http('GET', `${base}/v2/call/users.RegisterUser`, { headers: auth });
  expectError('unknown route', r, 404, 'NOT_FOUND', /no route/);
  r = await http('GET', call('users.RegisterUser'), { headers: auth });
  expectError('GET on a call', r, 405, 'INVALID_ARGUMENT');
  check('405: Allow POST', r.headers.get('allow') === 'POST');
  r = await http('DELETE', `${base}/v1/subscribe/users.events.%3E`, { headers: auth });
  expectError('DELETE on a subscription', r, 405, 'INVALID_ARGUMENT');
  check('405: Allow GET', r.headers.get('allow') === 'GET');

  // ---- the services' own errors, mapped ----
  r = await post(call('users.RegisterUser'), { email: ada });
  ++summary.register_requests;
  expectError('already registered', r, 409, 'ALREADY_EXISTS', /already registered/);
  check('already registered: trace_id', /^[0-9a-f]{32}$/.test(r.json?.trace_id ?? ''));
  r = await post(call('users.RegisterUser'), { email: 'no-at-sign' });
  ++summary.register_requests;
  expectError('invalid e-mail', r, 400, 'INVALID_ARGUMENT', /exactly one '@'/);
  r = await post(call('echo.Nobody'), {});
  expectError('no method behind the subject', r, 404, 'NOT_FOUND', /--schema/);

  // ---- a stalled service: 504 within ?timeout_ms ----
  if (options['user-service-pid']) {
    const pid = Number(options['user-service-pid']);
    process.kill(pid, 'SIGSTOP');
    // A stop is asynchronous: until it reaches them, the service's other
    // threads keep answering. Wait until every thread shows state T.
    const stopped = () => {
      try {
        return readdirSync(`/proc/${pid}/task`).every((t) => {
          const s = readFileSync(`/proc/${pid}/task/${t}/stat`, 'utf8');
          return 'Tt'.includes(s[s.lastIndexOf(')') + 2]);
        });
      } catch {
        return false;
      }
    };
    for (const until = Date.now() + 5000; !stopped() && Date.now() < until;) {
      await new Promise((resolve) => setTimeout(resolve, 2));
    }
    try {
      const before = Date.now();
      r = await post(call('users.RegisterUser', '?timeout_ms=300'),
                     { email: `stalled-${trace}@example.com` });
      ++summary.register_requests;
      const took = Date.now() - before;
      expectError('stalled service', r, 504, 'DEADLINE_EXCEEDED');
      check('stalled service: trace_id', /^[0-9a-f]{32}$/.test(r.json?.trace_id ?? ''));
      check('stalled service: answered within timeout_ms + 2 s', took < 2300, `${took} ms`);
    } finally {
      process.kill(pid, 'SIGCONT');
    }
  }

  // ---- metrics: the counters moved ----
  if (options['metrics-url']) {
    r = await http('GET', options['metrics-url']);
    check('metrics: 200', r.status === 200);
    const m = (name, labels) => metric(r.text, name, labels) ?? 0;
    check('metrics: calls 200',
          m('natsgw_edge_http_requests_total', { route: 'call', code: '200' }) >= 2);
    check('metrics: calls 401',
          m('natsgw_edge_http_requests_total', { route: 'call', code: '401' }) >= 2);
    check('metrics: publishes 202',
          m('natsgw_edge_http_requests_total', { route: 'publish', code: '202' }) >= 2);
    check('metrics: subscriptions 429',
          m('natsgw_edge_http_requests_total', { route: 'subscribe', code: '429' }) >= 1);
    for (const [reason, least] of [['unauthenticated', 3], ['subject_not_allowed', 4],
                                   ['bad_request', 20], ['body_too_large', 4],
                                   ['too_many_streams', 1]]) {
      check(`metrics: rejected ${reason}`,
            m('natsgw_edge_rejected_total', { reason }) >= least,
            `${m('natsgw_edge_rejected_total', { reason })} < ${least}`);
    }
    check('metrics: 3 streams open', m('natsgw_edge_sse_streams') === 3,
          `${m('natsgw_edge_sse_streams')}`);
    check('metrics: call durations',
          m('natsgw_edge_http_request_duration_seconds_count', { route: 'call' }) >= 5);
    check('metrics: the gateway\'s own metrics in the same registry',
          m('natsgw_client_request_duration_seconds_count',
            { subject: 'users.RegisterUser', code: 'OK' }) >= 2);
  }

  // ---- latency: calls through the edge ----
  const latencyCalls = Number(options['latency-calls'] ?? 0);
  if (latencyCalls > 0) {
    // Round trips as this client sees them, and the edge's own share
    // (Server-Timing: edge = the whole request inside the edge, nats = the
    // NATS request within it).
    const samples = [];
    const inside = [];
    const nats = [];
    const deadline = Date.now() + 10_000;  // bounded in count and time
    for (let i = 0; i < latencyCalls && Date.now() < deadline; ++i) {
      const start = process.hrtime.bigint();
      r = await post(call('echo.Echo'), { payload: [1, 2, 3], tag: i });
      const us = Number(process.hrtime.bigint() - start) / 1000;
      if (!check('echo through the edge', r.status === 200 && r.json?.tag === i + 1,
                 show(r.text))) break;
      samples.push(us);
      const timing = r.headers.get('server-timing') ?? '';
      const edgeMs = timing.match(/edge;dur=([\d.]+)/);
      const natsMs = timing.match(/nats;dur=([\d.]+)/);
      if (edgeMs) inside.push(Number(edgeMs[1]) * 1000);
      if (natsMs) nats.push(Number(natsMs[1]) * 1000);
    }
    const summarize = (xs) => {
      xs.sort((a, b) => a - b);
      return xs.length === 0 ? null
        : { p50_us: Math.round(percentile(xs, 50)), p99_us: Math.round(percentile(xs, 99)) };
    };
    if (samples.length > 0) {
      summary.latency = {
        calls: samples.length,
        client: summarize(samples),
        edge: summarize(inside),
        nats: summarize(nats),
      };
      const l = summary.latency;
      console.log(`edge_check: echo.Echo through the edge: ${l.calls} calls; ` +
                  `client p50 ${l.client.p50_us} us p99 ${l.client.p99_us} us; ` +
                  `inside the edge p50 ${l.edge?.p50_us} us p99 ${l.edge?.p99_us} us, ` +
                  `of which NATS p50 ${l.nats?.p50_us} us p99 ${l.nats?.p99_us} us`);
    }
  }

}

async function runGone() {
  let r;
  // ---- a service that is gone (crashed: its connection closes at once,
  // and NATS answers "no responders"): 503 ----
  if (options['email-service-pid']) {
    process.kill(Number(options['email-service-pid']), 'SIGKILL');
    await eventually('503 once email-service has stopped', async () => {
      r = await post(call('email.SendWelcomeEmail'),
                     { user_id: 'u-1', email: 'gone@example.com' });
      return r.status === 503;
    }, 15000);
    expectError('service stopped', r, 503, 'UNAVAILABLE');
  }
}

try {
  await main();
} catch (error) {
  check('no exception', false, error?.stack ?? String(error));
}
clearTimeout(watchdog);
console.log(`EDGE_CHECK_SUMMARY ${JSON.stringify(summary)}`);
if (failures.length > 0) {
  console.log(`edge_check: ${failures.length} of ${checks} checks failed`);
  process.exit(1);
}
console.log(`edge_check: OK (${checks} checks)`);
process.exit(0);
