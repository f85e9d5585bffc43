#!/usr/bin/env node
// Validates the kustomize overlays under k8s/overlays offline: renders each
// with `kubectl kustomize`, validates every object against the Kubernetes and
// prometheus-operator schemas plus a strict unknown-field check, and runs the
// semantic checks of manifest_checks.mjs. Prints one line per overlay and
// every failure; exits 1 when there is any.
//
//   node validate.mjs --root <repository> [--overlay <name>]...
//
// Without --overlay every directory of k8s/overlays with a
// kustomization.yaml is checked.

import fs from "node:fs";
import path from "node:path";
import { checkOverlay, projectVersion, summary } from "./manifest_checks.mjs";

function usage(message) {
  console.error(`${message}\nusage: node validate.mjs --root <repository> [--overlay <name>]...`);
  process.exit(2);
}

const args = process.argv.slice(2);
let root = null;
const overlays = [];
for (let i = 0; i < args.length; i++) {
  if (args[i] === "--root" && i + 1 < args.length) root = args[++i];
  else if (args[i] === "--overlay" && i + 1 < args.length) overlays.push(args[++i]);
  else usage(`unknown argument ${args[i]}`);
}
if (!root) usage("--root is required");
root = path.resolve(root);
const overlaysDir = path.join(root, "k8s", "overlays");
if (overlays.length === 0) {
  if (fs.existsSync(overlaysDir)) {
    for (const entry of fs.readdirSync(overlaysDir).sort()) {
      if (fs.existsSync(path.join(overlaysDir, entry, "kustomization.yaml"))) overlays.push(entry);
    }
  }
  if (overlays.length === 0) usage(`no overlay in ${overlaysDir}`);
}

const version = projectVersion(root);
let failures = 0;
for (const name of overlays) {
  const dir = path.join(overlaysDir, name);
  const result = await checkOverlay({ name, dir, root, version, project: true });
  console.log(summary(name, result));
  for (const error of result.errors) console.log(`  FAIL ${name}: ${error}`);
  failures += result.errors.length;
}
process.exit(failures === 0 ? 0 : 1);
