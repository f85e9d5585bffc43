#!/usr/bin/env node
// nats_keys.mjs: makes NATS NKeys, JWTs and .creds files at test time, so
// that no key is ever committed and no network tool (nk, nsc) is needed.
//
// Keys come from npm `nkeys.js` (Ed25519 NKeys, the NATS project's own
// implementation, locked in tests/interop/package-lock.json). JWTs are
// encoded here the way nats-io/jwt v2 encodes them, which is what
// nats-server verifies:
//
//   base64url(header) "." base64url(claims) "." base64url(signature)
//
//   header     {"typ":"JWT","alg":"ed25519-nkey"}
//   claims     {"exp"?, "jti", "iat", "iss", "name", "sub", "nats": {...}}
//   jti        base32 (RFC 4648, no padding) of SHA-512/256 over the JSON of
//              the standard claims without jti, as nats-io/jwt computes it
//   signature  Ed25519 by the issuer's NKey over the ASCII text
//              base64url(header) "." base64url(claims)
//
// The `nats` object carries the claim type ("operator", "account", "user")
// and version 2. Limits are written out in full, -1 meaning unlimited, as
// nats-io/jwt's NewAccountClaims and NewUserClaims do, rather than relying on
// how a server version reads an absent limit.
//
// Usage:
//   node nats_keys.mjs --out <existing dir> --spec '<json>'
//
// Spec (every part optional):
//   {
//     "nkey_users": ["alice", "mallory"],     // plain NKey users
//     "operator": {
//       "name": "test-operator",
//       "accounts": [
//         { "name": "APP",
//           "jetstream": true,   // JetStream limits in the account JWT
//           "preload": true,     // false: the server is not told about it
//           "system": false,     // true: the server's system_account,
//                                // which JetStream in operator mode needs
//           "users": [
//             { "name": "svc" },
//             { "name": "old", "expires_in": -3600 },   // seconds from now
//             { "name": "ro",
//               "permissions": { "pub": { "allow": ["a.>"] },
//                                "sub": { "deny": ["b.>"] } } } ] } ] }
//   }
//
// Output: files in --out (mode 0600), and on stdout one JSON object naming
// them, with public keys but never a seed or a JWT, so that the output can be
// shown in a failure message:
//   {
//     "nkey_users": { "<name>": { "public_key": "U...", "seed_file": "..." } },
//     "operator": { "public_key": "O...", "jwt_file": "..." },
//     "accounts": { "<name>": { "public_key": "A...", "jwt_file": "...",
//                               "preloaded": true,
//                               "users": { "<name>": { "public_key": "U...",
//                                 "seed_file": "...", "jwt_file": "...",
//                                 "creds_file": "...", "expires": <unix s> } } } },
//     "server_config": "operator: ...\nresolver: MEMORY\n..."
//   }
// server_config is the nats-server configuration for operator mode: the
// operator JWT (by file), the memory resolver and resolver_preload with every
// preloaded account's JWT.
//
// Exit status: 0 on success, 2 on a usage or spec error, 1 otherwise; the
// reason goes to stderr.
import { createHash } from "node:crypto";
import { writeFileSync, statSync } from "node:fs";
import { createRequire } from "node:module";
import { join } from "node:path";
import { parseArgs } from "node:util";

// nkeys.js is installed with the interop peers (tests/interop/node_modules);
// resolve it from there rather than from this file's directory.
const require = createRequire(
  new URL("../interop/package.json", import.meta.url),
);
let nkeys;
try {
  nkeys = require("nkeys.js");
} catch (e) {
  process.stderr.write(
    `cannot load npm package nkeys.js from tests/interop/node_modules ` +
      `(${e.message}): run \`npm ci --no-audit --no-fund\` in tests/interop\n`,
  );
  process.exit(1);
}

class UsageError extends Error {}

const ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";

// RFC 4648 base32 without padding (Go's base32.StdEncoding.WithPadding(NoPadding)).
function base32(bytes) {
  let out = "";
  let bits = 0;
  let value = 0;
  for (const byte of bytes) {
    value = (value << 8) | byte;
    bits += 8;
    while (bits >= 5) {
      out += ALPHABET[(value >>> (bits - 5)) & 31];
      bits -= 5;
    }
    value &= (1 << bits) - 1;
  }
  if (bits > 0) out += ALPHABET[(value << (5 - bits)) & 31];
  return out;
}

function b64url(text) {
  return Buffer.from(text, "utf8").toString("base64url");
}

const HEADER = b64url(JSON.stringify({ typ: "JWT", alg: "ed25519-nkey" }));

// Encodes and signs a JWT for `subject` (a public key) issued by the key
// pair `issuer`. `expires` is a Unix time in seconds, or undefined.
function encodeJwt({ name, subject, issuer, nats, expires }) {
  // The standard claims in nats-io/jwt's ClaimsData field order (aud, exp,
  // jti, iat, iss, name, nbf, sub), without jti: what jti is the hash of.
  const base = {};
  if (expires !== undefined) base.exp = expires;
  base.iat = Math.floor(Date.now() / 1000);
  base.iss = issuer.getPublicKey();
  base.name = name;
  base.sub = subject;
  const jti = base32(
    createHash("sha512-256").update(JSON.stringify(base)).digest(),
  );
  const claims = {};
  if (expires !== undefined) claims.exp = expires;
  Object.assign(claims, { jti }, base, { nats: { ...nats, version: 2 } });
  const body = b64url(JSON.stringify(claims));
  const signature = issuer.sign(Buffer.from(`${HEADER}.${body}`, "ascii"));
  return `${HEADER}.${body}.${Buffer.from(signature).toString("base64url")}`;
}

function seedOf(kp) {
  return new TextDecoder().decode(kp.getSeed());
}

// The .creds layout written by nsc and nats-io/jwt's FormatUserConfig.
function formatCreds(jwt, seed) {
  return (
    "-----BEGIN NATS USER JWT-----\n" +
    `${jwt}\n` +
    "------END NATS USER JWT------\n" +
    "\n" +
    "************************* IMPORTANT *************************\n" +
    "NKEY Seed printed below can be used to sign and prove identity.\n" +
    "NKEYs are sensitive and should be treated as secrets.\n" +
    "\n" +
    "-----BEGIN USER NKEY SEED-----\n" +
    `${seed}\n` +
    "------END USER NKEY SEED------\n" +
    "\n" +
    "*************************************************************\n"
  );
}

// Names become parts of file names ("user.<account>.<user>.creds", ...):
// keep them to an alphabet without "." or "/", so that no two collide.
function checkName(what, name) {
  if (typeof name !== "string" || !/^[A-Za-z0-9_-]{1,64}$/.test(name)) {
    throw new UsageError(
      `${what} name ${JSON.stringify(name)} must match [A-Za-z0-9_-]{1,64}`,
    );
  }
  return name;
}

function checkUnique(what, names) {
  const seen = new Set();
  for (const n of names) {
    if (seen.has(n)) throw new UsageError(`duplicate ${what} name "${n}"`);
    seen.add(n);
  }
}

function checkKeys(what, object, allowed) {
  if (object === null || typeof object !== "object" || Array.isArray(object)) {
    throw new UsageError(`${what} must be a JSON object`);
  }
  for (const key of Object.keys(object)) {
    if (!allowed.includes(key)) {
      throw new UsageError(
        `unknown field "${key}" in ${what} (allowed: ${allowed.join(", ")})`,
      );
    }
  }
}

function writeSecret(path, text) {
  writeFileSync(path, text, { mode: 0o600, flag: "wx" });
  return path;
}

const UNLIMITED = { subs: -1, data: -1, payload: -1 };

function makeUser(dir, account, accountKey, spec) {
  checkKeys(`user of account ${account}`, spec, [
    "name",
    "expires_in",
    "permissions",
  ]);
  const name = checkName("user", spec.name);
  if (
    spec.expires_in !== undefined &&
    !Number.isInteger(spec.expires_in)
  ) {
    throw new UsageError(`user ${name}: expires_in must be an integer`);
  }
  const expires = spec.expires_in === undefined
    ? undefined
    : Math.floor(Date.now() / 1000) + spec.expires_in;
  const perms = spec.permissions ?? {};
  checkKeys(`user ${name} permissions`, perms, ["pub", "sub", "resp"]);
  const kp = nkeys.createUser();
  const jwt = encodeJwt({
    name,
    subject: kp.getPublicKey(),
    issuer: accountKey,
    expires,
    nats: {
      pub: perms.pub ?? {},
      sub: perms.sub ?? {},
      ...(perms.resp ? { resp: perms.resp } : {}),
      ...UNLIMITED,
      type: "user",
    },
  });
  const seed = seedOf(kp);
  const stem = join(dir, `user.${account}.${name}`);
  const out = {
    public_key: kp.getPublicKey(),
    seed_file: writeSecret(`${stem}.nk`, `${seed}\n`),
    jwt_file: writeSecret(`${stem}.jwt`, `${jwt}\n`),
    creds_file: writeSecret(`${stem}.creds`, formatCreds(jwt, seed)),
  };
  if (expires !== undefined) out.expires = expires;
  return out;
}

function makeAccount(dir, operatorKey, spec) {
  checkKeys("account", spec, [
    "name",
    "jetstream",
    "preload",
    "system",
    "users",
  ]);
  const name = checkName("account", spec.name);
  const users = spec.users ?? [];
  if (!Array.isArray(users)) {
    throw new UsageError(`account ${name}: users must be an array`);
  }
  checkUnique(`user (account ${name})`, users.map((u) => u?.name));
  const kp = nkeys.createAccount();
  const limits = {
    ...UNLIMITED,
    imports: -1,
    exports: -1,
    wildcards: true,
    conn: -1,
    leaf: -1,
  };
  if (spec.jetstream) {
    Object.assign(limits, {
      mem_storage: -1,
      disk_storage: -1,
      streams: -1,
      consumer: -1,
    });
  }
  const jwt = encodeJwt({
    name,
    subject: kp.getPublicKey(),
    issuer: operatorKey,
    nats: {
      limits,
      default_permissions: { pub: {}, sub: {} },
      type: "account",
    },
  });
  const out = {
    public_key: kp.getPublicKey(),
    jwt_file: writeSecret(join(dir, `account.${name}.jwt`), `${jwt}\n`),
    preloaded: spec.preload !== false,
    system: spec.system === true,
    users: {},
  };
  for (const user of users) {
    out.users[user.name] = makeUser(dir, name, kp, user);
  }
  return { out, jwt };
}

function makeOperator(dir, spec) {
  checkKeys("operator", spec, ["name", "accounts"]);
  const name = checkName("operator", spec.name ?? "test-operator");
  const accounts = spec.accounts ?? [];
  if (!Array.isArray(accounts)) {
    throw new UsageError("operator: accounts must be an array");
  }
  checkUnique("account", accounts.map((a) => a?.name));
  if (accounts.filter((a) => a?.system === true).length > 1) {
    throw new UsageError("at most one account can be the system account");
  }
  const kp = nkeys.createOperator();
  const result = { operator: {}, accounts: {} };
  let preload = "";
  let system = "";
  for (const account of accounts) {
    const { out, jwt } = makeAccount(dir, kp, account);
    result.accounts[account.name] = out;
    if (out.preloaded) {
      preload += `  ${out.public_key}: ${JSON.stringify(jwt)}\n`;
    }
    if (out.system) system = out.public_key;
  }
  // Signed last: like nsc, it names the system account.
  const operatorJwt = encodeJwt({
    name,
    subject: kp.getPublicKey(),
    issuer: kp,
    nats: { ...(system ? { system_account: system } : {}), type: "operator" },
  });
  const jwtFile = writeSecret(
    join(dir, `operator.${name}.jwt`),
    `${operatorJwt}\n`,
  );
  result.operator = { public_key: kp.getPublicKey(), jwt_file: jwtFile };
  let config = `operator: ${JSON.stringify(jwtFile)}\n` +
    "resolver: MEMORY\n" +
    `resolver_preload: {\n${preload}}\n`;
  if (system) config += `system_account: ${system}\n`;
  result.server_config = config;
  return result;
}

function main() {
  let values;
  try {
    ({ values } = parseArgs({
      options: { out: { type: "string" }, spec: { type: "string" } },
      strict: true,
    }));
  } catch (e) {
    throw new UsageError(e.message);
  }
  if (!values.out || values.spec === undefined) {
    throw new UsageError("usage: nats_keys.mjs --out <dir> --spec '<json>'");
  }
  if (!statSync(values.out, { throwIfNoEntry: false })?.isDirectory()) {
    throw new UsageError(`--out ${values.out} is not a directory`);
  }
  let spec;
  try {
    spec = JSON.parse(values.spec);
  } catch (e) {
    throw new UsageError(`--spec is not JSON: ${e.message}`);
  }
  checkKeys("spec", spec, ["nkey_users", "operator"]);
  const result = {};
  if (spec.nkey_users !== undefined) {
    if (!Array.isArray(spec.nkey_users)) {
      throw new UsageError("nkey_users must be an array of names");
    }
    checkUnique("nkey user", spec.nkey_users);
    result.nkey_users = {};
    for (const name of spec.nkey_users) {
      checkName("nkey user", name);
      const kp = nkeys.createUser();
      result.nkey_users[name] = {
        public_key: kp.getPublicKey(),
        seed_file: writeSecret(join(values.out, `nkey.${name}.nk`), `${seedOf(kp)}\n`),
      };
    }
  }
  if (spec.operator !== undefined) {
    Object.assign(result, makeOperator(values.out, spec.operator));
  }
  process.stdout.write(`${JSON.stringify(result)}\n`);
}

try {
  main();
} catch (e) {
  process.stderr.write(`nats_keys.mjs: ${e.message}\n`);
  process.exit(e instanceof UsageError ? 2 : 1);
}
