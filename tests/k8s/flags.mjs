#!/usr/bin/env node
// The command lines of the project's containers, checked by the binaries
// themselves: renders each overlay of k8s/overlays and runs every project
// binary (from the build tree) with its container's arguments and Abseil's
// --only_check_args (manifest_checks.mjs, checkProjectFlags). Then proves the
// check can fail: the first container again, with a flag no binary has.
//
//   node flags.mjs --root <repository> --bin-dir <build>/bin

import fs from "node:fs";
import path from "node:path";
import { checkProjectFlags, renderOverlay } from "./manifest_checks.mjs";

function usage(message) {
  console.error(`${message}\nusage: node flags.mjs --root <repository> --bin-dir <directory>`);
  process.exit(2);
}

const args = process.argv.slice(2);
let root = null;
let binDir = null;
for (let i = 0; i < args.length; i++) {
  if (args[i] === "--root" && i + 1 < args.length) root = path.resolve(args[++i]);
  else if (args[i] === "--bin-dir" && i + 1 < args.length) binDir = path.resolve(args[++i]);
  else usage(`unknown argument ${args[i]}`);
}
if (!root || !binDir) usage("--root and --bin-dir are required");

const overlaysDir = path.join(root, "k8s", "overlays");
const overlays = fs
  .readdirSync(overlaysDir)
  .filter((e) => fs.existsSync(path.join(overlaysDir, e, "kustomization.yaml")))
  .sort();
let failures = 0;
let first = null;
for (const name of overlays) {
  const { objects, errors } = renderOverlay(path.join(overlaysDir, name));
  const checked = objects.length > 0 ? checkProjectFlags(objects, binDir, errors) : 0;
  if (checked === 0 && errors.length === 0) errors.push("no container runs the project image");
  console.log(`overlay ${name}: ${checked} project container command lines accepted by their binaries; ${errors.length} failures`);
  for (const error of errors) console.log(`  FAIL ${name}: ${error}`);
  failures += errors.length;
  first ??= objects.find((o) => o.kind === "Deployment" && o.spec?.template?.spec?.containers?.[0]?.image?.includes("natsgw"));
}

// The negative control: a flag no binary defines must be refused.
if (first) {
  const broken = structuredClone(first);
  const c = broken.spec.template.spec.containers[0];
  c.args = [...(c.args ?? []), "--no_such_flag_anywhere=1"];
  const errors = [];
  checkProjectFlags([broken], binDir, errors);
  if (errors.length === 1 && errors[0].includes("no_such_flag_anywhere")) {
    console.log(`control: an unknown flag is refused (${errors[0].split(": ").slice(-1)[0]})`);
  } else {
    console.log(`  FAIL control: --no_such_flag_anywhere=1 was not refused (${JSON.stringify(errors)})`);
    failures++;
  }
}
process.exit(failures === 0 ? 0 : 1);
