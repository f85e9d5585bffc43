#!/usr/bin/env node
// services_check.js: checks a running NATS Services API service the way real
// tools see it, with the nats.js v2 services client (npm `nats`):
//
//   1. pings, infos and stats the service on all three control subjects
//      ($SRV.<VERB>, $SRV.<VERB>.<name>, $SRV.<VERB>.<name>.<id>) through
//      nc.services.client(), and requires every expected instance to answer
//      each of them;
//   2. validates every reply with ajv against the jsm.go JSON schemas that
//      the nats CLI uses (micro-schemas/), plus the rules those schemas leave
//      out (exact type, metadata never null, endpoints always present,
//      integer counters, UTC `started`), and compares the identity fields
//      with what the service was configured with (--expect-json);
//   3. calls the echo endpoint with nc.request (a given payload, an empty
//      one and a 64 KiB one) and checks the reply bytes, or calls an
//      endpoint once with given request bytes and checks the exact reply
//      bytes (--call-subject: a typed FlatBuffers endpoint), and calls an
//      endpoint that answers with a service error, decoded with nats.js's
//      ServiceError (code and message);
//   4. checks that STATS counted exactly those calls, and optionally that an
//      instance whose statistics were reset reports zeros and a new
//      `started`.
//
// Usage:
//   node services_check.js --url nats://127.0.0.1:4222 --name orders \
//       --id <instance id> [--instances N] [--expect-json '{...}'] \
//       (--echo-subject orders.echo --payload-hex 00ff41 |
//        --call-subject orders.Get --request-hex <hex> --reply-hex <hex>) \
//       [--error-subject orders.fail --error-code 404 --error-message text] \
//       [--reset-id <instance id> --reset-after-ns <unix ns>]
//
// --instances: how many instances of the service run on the server (all of
//   them answer every control subject but the per-id one); the server must
//   run no other service, because every service answers $SRV.<VERB>.
// --expect-json: {"version", "description", "metadata", "endpoints":
//   [{"name", "subject", "queue_group", "metadata"}]} as configured.
// --reset-id / --reset-after-ns: that instance's statistics were reset at or
//   after the given Unix time (ns), after every instance had started and
//   served requests; it must report zero counters and started >= the time,
//   the others started < it and still count requests.
//
// --url defaults to $NATS_URL. Exits 0 when every check passed; otherwise
// prints every failure on stderr ("services_check: FAIL ...") and exits 1
// (2 for bad usage or a missing dependency, 3 when the whole check took
// longer than --timeout-ms, default 60000).
"use strict";

const fs = require("fs");
const path = require("path");
const util = require("util");

function usage(message) {
  process.stderr.write(`services_check: ${message}\n`);
  process.exit(2);
}

function requireOrExit(name) {
  try {
    return require(name);
  } catch (err) {
    usage(
      `cannot load npm package "${name}" (${err.message}); ` +
        `run "npm ci" in ${__dirname} (scripts/lib/setup.sh does it)`,
    );
  }
}

// The checks are only as good as the peers they run: refuse node_modules
// that do not match package-lock.json (installed from an older lock).
function checkLockedVersions(names) {
  const lock = JSON.parse(fs.readFileSync(path.join(__dirname, "package-lock.json"), "utf8"));
  for (const name of names) {
    const locked = lock.packages && lock.packages[`node_modules/${name}`];
    let installed = null;
    try {
      installed = JSON.parse(fs.readFileSync(path.join(__dirname, "node_modules", name, "package.json"), "utf8")).version;
    } catch (err) {
      usage(`npm package "${name}" is not installed (${err.message}); run "npm ci" in ${__dirname} (scripts/lib/setup.sh does it)`);
    }
    if (!locked || locked.version !== installed) {
      usage(
        `npm package "${name}" is ${installed}, package-lock.json wants ${locked && locked.version}; ` +
          `run "npm ci" in ${__dirname} (scripts/lib/setup.sh does it)`,
      );
    }
  }
}
checkLockedVersions(["nats", "ajv", "ajv-formats"]);

const { connect, ServiceError, RequestStrategy } = requireOrExit("nats");
const Ajv = requireOrExit("ajv");
const addFormats = requireOrExit("ajv-formats");

function parseArgs(argv) {
  const args = {
    url: process.env.NATS_URL || "",
    name: "",
    id: "",
    instances: "1",
    expectJson: "",
    echoSubject: "",
    payloadHex: "",
    callSubject: "",
    requestHex: "",
    replyHex: "",
    errorSubject: "",
    errorCode: "",
    errorMessage: "",
    resetId: "",
    resetAfterNs: "",
    timeoutMs: "60000",
  };
  const keys = {
    "--url": "url",
    "--name": "name",
    "--id": "id",
    "--instances": "instances",
    "--expect-json": "expectJson",
    "--echo-subject": "echoSubject",
    "--payload-hex": "payloadHex",
    "--call-subject": "callSubject",
    "--request-hex": "requestHex",
    "--reply-hex": "replyHex",
    "--error-subject": "errorSubject",
    "--error-code": "errorCode",
    "--error-message": "errorMessage",
    "--reset-id": "resetId",
    "--reset-after-ns": "resetAfterNs",
    "--timeout-ms": "timeoutMs",
  };
  for (let i = 0; i < argv.length; i++) {
    const key = keys[argv[i]];
    if (key === undefined || i + 1 >= argv.length) {
      usage(`unknown or incomplete argument "${argv[i]}"`);
    }
    args[key] = argv[++i];
  }
  if (!args.url) usage("--url (or $NATS_URL) is required");
  if (!args.name) usage("--name is required");
  if (!args.id) usage("--id is required");
  if (Boolean(args.echoSubject) === Boolean(args.callSubject)) {
    usage("give exactly one of --echo-subject and --call-subject");
  }
  for (const key of ["requestHex", "replyHex"]) {
    if (!/^([0-9a-fA-F]{2})*$/.test(args[key])) usage(`--${key === "requestHex" ? "request" : "reply"}-hex is not an even number of hex digits`);
  }
  // The endpoint whose calls are made and counted.
  args.callTarget = args.echoSubject || args.callSubject;
  if (!/^[1-9][0-9]*$/.test(args.instances)) usage("--instances must be a positive integer");
  args.instances = Number(args.instances);
  if (!/^([0-9a-fA-F]{2})*$/.test(args.payloadHex)) {
    usage(`--payload-hex "${args.payloadHex}" is not an even number of hex digits`);
  }
  if (args.errorSubject && !/^[0-9]+$/.test(args.errorCode)) {
    usage("--error-subject needs a numeric --error-code");
  }
  if (Boolean(args.resetId) !== /^[0-9]+$/.test(args.resetAfterNs)) {
    usage("--reset-id and a numeric --reset-after-ns go together");
  }
  if (!/^[1-9][0-9]*$/.test(args.timeoutMs)) usage("--timeout-ms must be a positive integer");
  if (args.expectJson) {
    try {
      args.expect = JSON.parse(args.expectJson);
    } catch (err) {
      usage(`--expect-json is not JSON: ${err.message}`);
    }
  }
  return args;
}

const args = parseArgs(process.argv.slice(2));
const failures = [];
let checks = 0;

function check(ok, message) {
  checks++;
  if (!ok) {
    failures.push(message);
    process.stderr.write(`services_check: FAIL ${message}\n`);
  }
  return ok;
}

const show = (v) => JSON.stringify(v);

// --- schemas -----------------------------------------------------------------

const ajv = new Ajv({ allErrors: true, strict: true });
addFormats(ajv);
const schemaDir = path.join(__dirname, "micro-schemas");
const validators = {};
for (const verb of ["ping", "info", "stats"]) {
  const file = path.join(schemaDir, `${verb}_response.json`);
  validators[verb] = ajv.compile(JSON.parse(fs.readFileSync(file, "utf8")));
}

const kTypes = {
  ping: "io.nats.micro.v1.ping_response",
  info: "io.nats.micro.v1.info_response",
  stats: "io.nats.micro.v1.stats_response",
};

// natsgw's STATS `data`: latency percentiles and shed/expired counts.
const kDataKeys = ["p50_ns", "p90_ns", "p99_ns", "p999_ns", "shed", "expired"];

function isPlainObject(v) {
  return v !== null && typeof v === "object" && !Array.isArray(v);
}

// RFC 3339 in UTC as Go's RFC3339Nano writes it (what natsgw promises):
// at most 9 fractional digits, no trailing zeros. Returns Unix nanoseconds
// as a BigInt (Date only has milliseconds), or null.
function startedNanos(text) {
  const m = /^(\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2})(?:\.(\d{0,8}[1-9]))?Z$/.exec(text);
  if (!m) return null;
  const ms = Date.parse(`${m[1]}Z`);
  if (Number.isNaN(ms)) return null;
  return BigInt(ms) * 1000000n + BigInt((m[2] || "").padEnd(9, "0"));
}

// Schema validation plus what natsgw promises beyond the schemas (the nats
// CLI re-marshals through Go structs, where null metadata or a missing
// endpoints array once broke `nats micro`), plus the configured values.
function validate(verb, doc, where) {
  if (!check(isPlainObject(doc), `${where}: reply is not a JSON object: ${show(doc)}`)) return false;
  const validator = validators[verb];
  if (!validator(doc)) {
    const errors = validator.errors
      .map((e) => `${e.instancePath || "/"} ${e.message} ${show(e.params)}`)
      .join("; ");
    check(false, `${where}: ${verb}_response.json schema: ${errors}; document: ${show(doc)}`);
    return false;
  }
  let ok = check(doc.type === kTypes[verb], `${where}: type is ${show(doc.type)}`);
  ok = check(doc.name === args.name, `${where}: name is ${show(doc.name)}`) && ok;
  ok = check(/^[0-9A-Za-z]{22}$/.test(doc.id), `${where}: id ${show(doc.id)} is not 22 base62 characters`) && ok;
  ok = check(isPlainObject(doc.metadata), `${where}: metadata must be an object, got ${show(doc.metadata)}`) && ok;
  if (verb === "info" || verb === "stats") {
    ok = check(Array.isArray(doc.endpoints), `${where}: endpoints must be an array`) && ok;
    for (const e of doc.endpoints || []) {
      ok = check(typeof e.queue_group === "string", `${where}: endpoint ${e.name} queue_group missing`) && ok;
      if (verb === "info") {
        ok = check(isPlainObject(e.metadata), `${where}: endpoint ${e.name} metadata must be an object`) && ok;
        continue;
      }
      if (e.num_requests > 0) {
        ok = check(
          e.average_processing_time === Math.floor(e.processing_time / e.num_requests),
          `${where}: endpoint ${e.name} average_processing_time ${e.average_processing_time} is not ` +
            `processing_time ${e.processing_time} / num_requests ${e.num_requests}`,
        ) && ok;
      } else {
        ok = check(
          e.processing_time === 0 && e.average_processing_time === 0,
          `${where}: endpoint ${e.name} has processing time without requests`,
        ) && ok;
      }
      ok = check(isPlainObject(e.data), `${where}: endpoint ${e.name} data must be an object`) && ok;
      if (!isPlainObject(e.data)) continue;
      for (const k of kDataKeys) {
        ok = check(Number.isInteger(e.data[k]) && e.data[k] >= 0, `${where}: endpoint ${e.name} data.${k} must be an integer >= 0`) && ok;
      }
      const d = e.data;
      ok = check(
        d.p50_ns <= d.p90_ns && d.p90_ns <= d.p99_ns && d.p99_ns <= d.p999_ns,
        `${where}: endpoint ${e.name} percentiles out of order: ${show(d)}`,
      ) && ok;
    }
  }
  if (verb === "stats") {
    ok = check(startedNanos(doc.started) !== null, `${where}: started ${show(doc.started)} is not RFC 3339 UTC (RFC3339Nano)`) && ok;
  }
  const want = args.expect;
  if (want) {
    ok = check(doc.version === want.version, `${where}: version ${show(doc.version)}, want ${show(want.version)}`) && ok;
    ok = check(util.isDeepStrictEqual(doc.metadata, want.metadata), `${where}: metadata ${show(doc.metadata)}, want ${show(want.metadata)}`) && ok;
    if (verb === "info") {
      ok = check(doc.description === want.description, `${where}: description ${show(doc.description)}, want ${show(want.description)}`) && ok;
      ok = check(util.isDeepStrictEqual(doc.endpoints, want.endpoints), `${where}: endpoints ${show(doc.endpoints)}, want ${show(want.endpoints)}`) && ok;
    }
    if (verb === "stats") {
      const got = (doc.endpoints || []).map((e) => ({ name: e.name, subject: e.subject, queue_group: e.queue_group }));
      const expected = want.endpoints.map((e) => ({ name: e.name, subject: e.subject, queue_group: e.queue_group }));
      ok = check(util.isDeepStrictEqual(got, expected), `${where}: endpoints ${show(got)}, want ${show(expected)}`) && ok;
    }
  }
  return ok;
}

// --- the checks --------------------------------------------------------------

// nats.js's services client with a count strategy: the default (stop 300 ms
// after the first reply, as `nats micro` does too) would make "every
// instance answered" depend on timing; this waits for exactly `n` replies
// (at most 5 s). The documents are decoded exactly as with the default.
function client(nc, n) {
  return nc.services.client({ strategy: RequestStrategy.Count, maxMessages: n, maxWait: 5000 });
}

async function collect(iterPromise) {
  const out = [];
  for await (const doc of await iterPromise) out.push(doc);
  return out;
}

// Queries `verb` on one control subject, validates every reply and checks
// that exactly the expected instances answered. Returns the replies by id.
async function queryForm(nc, verb, form, { report = true } = {}) {
  const byId = form === "id";
  const want = byId ? 1 : args.instances;
  const where = `${verb.toUpperCase()} (${byId ? `name ${args.name} id ${args.id}` : form === "name" ? `name ${args.name}` : "all services"})`;
  const c = client(nc, want);
  let docs = [];
  try {
    docs = await collect(form === "all" ? c[verb]() : form === "name" ? c[verb](args.name) : c[verb](args.name, args.id));
  } catch (err) {
    // 503 is the server's "no responders": nothing subscribes to the subject.
    const why = err && err.code === "503" ? "no responders (nothing subscribes to the control subject)" : String(err);
    if (report) check(false, `${where}: ${why}`);
  }
  const out = new Map();
  if (!report) {
    for (const doc of docs) if (doc && typeof doc.id === "string") out.set(doc.id, doc);
    return out;
  }
  check(docs.length === want, `${where}: ${docs.length} replies, want ${want}: ${show(docs)}`);
  for (const doc of docs) {
    validate(verb, doc, where);
    // Kept even when invalid (that is reported above), so that one bad field
    // does not also read as a missing instance.
    if (!isPlainObject(doc) || typeof doc.id !== "string") continue;
    check(!out.has(doc.id), `${where}: instance ${doc.id} answered twice`);
    out.set(doc.id, doc);
  }
  check(out.has(args.id), `${where}: no reply from instance ${args.id}`);
  if (byId) check(out.size === 1, `${where}: replies from ${show([...out.keys()])}`);
  return out;
}

async function query(nc, verb) {
  let instances = null;
  for (const form of ["all", "name", "id"]) {
    const replies = await queryForm(nc, verb, form);
    if (form === "name") instances = replies;
  }
  return instances;
}

function endpointBySubject(doc, subject, where) {
  const e = ((doc && doc.endpoints) || []).find((x) => x.subject === subject);
  check(e !== undefined, `${where}: instance ${doc && doc.id}: no endpoint on subject ${subject}`);
  return e;
}

// The counters of `subject` on each of `ids` (no reply or no such endpoint:
// zeros, which the exact checks below then report).
function counters(statsById, subject, ids) {
  const out = new Map();
  for (const id of ids) {
    const doc = statsById.get(id);
    const e = ((doc && doc.endpoints) || []).find((x) => x.subject === subject);
    out.set(id, e ? { num_requests: e.num_requests, num_errors: e.num_errors } : { num_requests: 0, num_errors: 0 });
  }
  return out;
}

function sum(map, key) {
  let total = 0;
  for (const c of map.values()) total += c[key];
  return total;
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

async function run() {
  const nc = await connect({ servers: args.url, name: "natsgw-services-check", timeout: 5000 });
  try {
    const ping = await query(nc, "ping");
    const info = await query(nc, "info");
    const ids = [...info.keys()];
    check(
      util.isDeepStrictEqual([...ping.keys()].sort(), [...ids].sort()),
      `PING and INFO saw different instances: ${show([...ping.keys()])} vs ${show(ids)}`,
    );
    for (const doc of info.values()) {
      endpointBySubject(doc, args.callTarget, "INFO");
      if (args.errorSubject) endpointBySubject(doc, args.errorSubject, "INFO");
    }

    // STATS before the calls: the baseline the counts below are compared
    // with (the instances may have served requests before this script ran).
    const before = await query(nc, "stats");

    if (args.resetId) {
      const resetAfter = BigInt(args.resetAfterNs);
      check(before.has(args.resetId), `STATS: no reply from the reset instance ${args.resetId}`);
      for (const [id, doc] of before) {
        const started = startedNanos(doc.started);
        if (started === null) continue;  // reported by validate()
        if (id !== args.resetId) {
          check(started < resetAfter, `STATS: instance ${id} (not reset) started ${doc.started}, after the reset of ${args.resetId}`);
          check(
            (doc.endpoints || []).some((e) => e.num_requests > 0),
            `STATS: instance ${id} (not reset) counts no requests: did the reset of ${args.resetId} clear it too?`,
          );
          continue;
        }
        check(started >= resetAfter, `STATS: reset instance ${id} started ${doc.started}, before its reset (${args.resetAfterNs} ns)`);
        for (const e of doc.endpoints || []) {
          const zero =
            e.num_requests === 0 && e.num_errors === 0 && e.last_error === "" &&
            e.processing_time === 0 && e.average_processing_time === 0 &&
            kDataKeys.every((k) => e.data && e.data[k] === 0);
          check(zero, `STATS: reset instance ${id}: endpoint ${e.name} is not zeroed: ${show(e)}`);
        }
      }
    }

    // The echo endpoint must answer with exactly the request bytes; a
    // --call-subject endpoint with exactly --reply-hex.
    const given = Buffer.from(args.payloadHex, "hex");
    const calls = [];
    if (args.echoSubject) {
      const large = Buffer.alloc(64 * 1024);
      for (let i = 0; i < large.length; i++) large[i] = (i * 131 + 7) & 0xff;
      for (const payload of [given, Buffer.alloc(0), large]) calls.push({ request: payload, reply: payload });
    } else {
      calls.push({ request: Buffer.from(args.requestHex, "hex"), reply: Buffer.from(args.replyHex, "hex") });
    }
    for (const call of calls) {
      const what = `${args.echoSubject ? "echo " : "call "}${args.callTarget} (${call.request.length} bytes)`;
      const reply = await nc.request(args.callTarget, call.request, { timeout: 5000 });
      check(!ServiceError.isServiceError(reply), `${what}: unexpected service error ${show(ServiceError.toServiceError(reply))}`);
      const got = Buffer.from(reply.data);
      check(
        got.equals(call.reply),
        `${what}: replied ${got.length} bytes ${got.subarray(0, 32).toString("hex")}..., want ${call.reply.length} bytes ${call.reply.subarray(0, 32).toString("hex")}...`,
      );
    }

    // The error endpoint: nats.js must decode natsgw's error headers.
    const errorCalls = args.errorSubject ? 2 : 0;
    for (let i = 0; i < errorCalls; i++) {
      const failed = await nc.request(args.errorSubject, given, { timeout: 5000 });
      const err = ServiceError.toServiceError(failed);
      if (check(err !== null, `error ${args.errorSubject}: reply carries no Nats-Service-Error-Code`)) {
        check(err.code === Number(args.errorCode), `error ${args.errorSubject}: code ${err.code}, want ${args.errorCode}`);
        if (args.errorMessage) {
          check(err.message === args.errorMessage, `error ${args.errorSubject}: message ${show(err.message)}, want ${show(args.errorMessage)}`);
        }
      }
    }

    // STATS after the calls must count exactly them. The echo endpoint is in
    // a queue group (one instance handles each call); the error endpoint
    // has none, so every instance handles every call. A reply can reach us
    // before the instance that sent it (or, without a queue group, before
    // the other instances) has recorded the call, so STATS is read until
    // the counts arrive (bounded), then checked exactly.
    const echoBefore = counters(before, args.callTarget, ids);
    const failBefore = counters(before, args.errorSubject, ids);
    const expectedEcho = calls.length;
    const settled = (stats) => {
      const echo = counters(stats, args.callTarget, ids);
      if (sum(echo, "num_requests") - sum(echoBefore, "num_requests") < expectedEcho) return false;
      if (!args.errorSubject) return true;
      const fail = counters(stats, args.errorSubject, ids);
      return ids.every((id) => fail.get(id).num_requests - failBefore.get(id).num_requests >= errorCalls);
    };
    const settleBy = Date.now() + 5000;
    while (!settled(await queryForm(nc, "stats", "name", { report: false })) && Date.now() < settleBy) {
      await sleep(50);
    }
    // The reported round: every form validated again, by name for counting.
    const after = await query(nc, "stats");
    const echoAfter = counters(after, args.callTarget, ids);
    const echoDelta = sum(echoAfter, "num_requests") - sum(echoBefore, "num_requests");
    check(echoDelta === expectedEcho, `STATS: ${args.callTarget} num_requests grew by ${echoDelta} over all instances, want ${expectedEcho}`);
    for (const id of ids) {
      const grew = echoAfter.get(id).num_errors - echoBefore.get(id).num_errors;
      check(grew === 0, `STATS: instance ${id}: ${args.callTarget} num_errors grew by ${grew}, want 0`);
    }
    if (args.errorSubject) {
      const failAfter = counters(after, args.errorSubject, ids);
      const lastError = `${args.errorCode}:${args.errorMessage}`;
      for (const id of ids) {
        const requests = failAfter.get(id).num_requests - failBefore.get(id).num_requests;
        const errors = failAfter.get(id).num_errors - failBefore.get(id).num_errors;
        check(requests === errorCalls, `STATS: instance ${id}: ${args.errorSubject} num_requests grew by ${requests}, want ${errorCalls}`);
        check(errors === errorCalls, `STATS: instance ${id}: ${args.errorSubject} num_errors grew by ${errors}, want ${errorCalls}`);
        const e = endpointBySubject(after.get(id), args.errorSubject, "STATS");
        if (e && args.errorMessage) {
          check(e.last_error === lastError, `STATS: instance ${id}: ${args.errorSubject} last_error ${show(e.last_error)}, want ${show(lastError)}`);
        } else if (e) {
          check(e.last_error.startsWith(`${args.errorCode}:`), `STATS: instance ${id}: ${args.errorSubject} last_error ${show(e.last_error)}, want "${args.errorCode}:..."`);
        }
      }
    }
  } finally {
    await nc.close();
  }
}

const watchdog = setTimeout(() => {
  process.stderr.write(`services_check: FAIL timed out after ${args.timeoutMs} ms\n`);
  process.exit(3);
}, Number(args.timeoutMs));

run().then(
  () => {
    clearTimeout(watchdog);
    if (failures.length > 0) {
      process.stderr.write(`services_check: ${failures.length} of ${checks} checks failed\n`);
      process.exit(1);
    }
    process.stdout.write(`services_check: OK, ${checks} checks passed for service ${args.name}\n`);
    process.exit(0);
  },
  (err) => {
    clearTimeout(watchdog);
    process.stderr.write(`services_check: FAIL ${err && err.stack ? err.stack : err}\n`);
    process.exit(1);
  },
);
