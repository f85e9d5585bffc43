// Offline checks of rendered Kubernetes manifests: the Kubernetes and
// prometheus-operator schemas (npm kubernetes-models and
// @kubernetes-models/prometheus-operator), a strict unknown-field check, and
// semantic checks that a schema cannot express (selectors, named ports,
// references, labels, security, files named on command lines, the project's
// workloads against the Dockerfile's image and the rules' job, the NATS
// configuration, the rules and the dashboard that monitoring/ owns).
//
// Every check appends to an error list instead of stopping, so one run shows
// every problem of an overlay.

import { spawnSync } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { isDeepStrictEqual } from "node:util";
import YAML from "yaml";

// ---------------------------------------------------------------------------
// Project facts the manifests must agree with.

// Reads x.y.z from `project(<name> VERSION x.y.z` in the top-level
// CMakeLists.txt, the one place the version is written.
export function projectVersion(root) {
  const text = fs.readFileSync(path.join(root, "CMakeLists.txt"), "utf8");
  const match = /project\s*\(\s*[A-Za-z0-9_-]+[^)]*?\bVERSION\s+([0-9]+\.[0-9]+\.[0-9]+)/s.exec(text);
  if (!match) {
    throw new Error(`no "project(... VERSION x.y.z" in ${path.join(root, "CMakeLists.txt")}`);
  }
  return match[1];
}

// Secrets that an overlay references but deliberately does not contain,
// per overlay, with the reason. Such a Secret must not appear in the render
// either, so the list cannot go stale silently.
export const EXTERNAL_SECRETS = {
  prod: {
    "nats-auth":
      "created by the operator (kubectl -n natsgw create secret generic nats-auth " +
      "--from-literal=user=... --from-literal=password=...): production credentials " +
      "are never kept in the manifests",
    "natsgw-edge-tokens":
      "created by the operator (kubectl -n natsgw create secret generic natsgw-edge-tokens " +
      "--from-literal=tokens=...): production API tokens are never kept in the manifests",
  },
};

// The objects every overlay of the project renders (k8s/README.md and the
// layout under k8s/): a generated ConfigMap or Secret matches with or without
// kustomize's name hash suffix.
export const REQUIRED_OBJECTS = [
  ["StatefulSet", "nats"],
  ["Service", "nats"],
  ["Service", "nats-headless"],
  ["ConfigMap", "natsgw-config"],
  ["Deployment", "user-service"],
  ["Deployment", "email-service"],
  ["Deployment", "natsgw-edge"],
  ["Service", "natsgw-edge"],
  ["PrometheusRule", "natsgw-rules"],
  ["ConfigMap", "natsgw-grafana-dashboard"],
  ["HorizontalPodAutoscaler", null],
  ["NetworkPolicy", null],
  ["PodDisruptionBudget", null],
];

// The rule files, in the order their groups appear in the PrometheusRule.
export const RULE_FILES = ["natsgw-recording.rules.yml", "natsgw-alerts.rules.yml"];

// The deployments that run the project image (REQUIRED_OBJECTS has them).
export const PROJECT_DEPLOYMENTS = ["user-service", "email-service", "natsgw-edge"];

// The container port the project's binaries serve /metrics, /healthz,
// /readyz and /drainz on (--metrics_port).
const METRICS_PORT_NAME = "metrics";

// The label that marks a dashboard ConfigMap for the Grafana sidecar.
const DASHBOARD_LABEL = "grafana_dashboard";

const CLUSTER_SCOPED = new Set([
  "Namespace", "ClusterRole", "ClusterRoleBinding", "PersistentVolume", "StorageClass",
  "CustomResourceDefinition", "PriorityClass", "ValidatingWebhookConfiguration",
  "MutatingWebhookConfiguration", "APIService", "IngressClass", "RuntimeClass",
]);

const LABEL_NAME = "app.kubernetes.io/name";
const LABEL_PART_OF = "app.kubernetes.io/part-of";
const LABEL_VERSION = "app.kubernetes.io/version";
const PART_OF = "natsgw";

// ---------------------------------------------------------------------------
// Small helpers.

export function objectId(obj) {
  const kind = obj?.kind ?? "<no kind>";
  const name = obj?.metadata?.name ?? "<no name>";
  return `${kind}/${name}`;
}

function nsOf(obj) {
  return obj?.metadata?.namespace ?? "default";
}

function asArray(value) {
  return Array.isArray(value) ? value : [];
}

function isPlainObject(value) {
  return value !== null && typeof value === "object" && !Array.isArray(value);
}

// kustomize appends "-<10 characters>" to generated ConfigMap/Secret names.
function baseName(name) {
  return name.replace(/-[a-z0-9]{10}$/, "");
}

function nameMatches(actual, wanted) {
  return actual === wanted || baseName(actual) === wanted;
}

function formatPath(parts) {
  let out = "";
  for (const part of parts) {
    if (typeof part === "number") {
      out += `[${part}]`;
    } else if (/^[A-Za-z_$][A-Za-z0-9_$]*$/.test(part)) {
      out += out === "" ? part : `.${part}`;
    } else {
      out += `[${JSON.stringify(part)}]`;
    }
  }
  return out === "" ? "<root>" : out;
}

// Runs a program with a time limit; a missing program is reported with the
// Debian package that provides it.
function run(program, args, { pkg, env, input, timeoutMs = 60000 } = {}) {
  const result = spawnSync(program, args, {
    encoding: "utf8",
    env: env ?? process.env,
    input,
    timeout: timeoutMs,
    maxBuffer: 64 * 1024 * 1024,
  });
  if (result.error?.code === "ENOENT") {
    return { missing: `${program} not found: install the package \`${pkg}\`` };
  }
  if (result.error) {
    return { failed: `${program} ${args.join(" ")}: ${result.error.message}` };
  }
  return { status: result.status, signal: result.signal, stdout: result.stdout, stderr: result.stderr };
}

function withTempFile(name, content, fn) {
  return withTempFiles({ [name]: content }, (dir) => fn(path.join(dir, name)));
}

// Writes each name -> content of `files` into a new temporary directory,
// calls fn(dir), and removes the directory.
function withTempFiles(files, fn) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "natsgw-k8s-"));
  try {
    for (const [name, content] of Object.entries(files)) {
      fs.writeFileSync(path.join(dir, name), content);
    }
    return fn(dir);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

// ---------------------------------------------------------------------------
// Rendering.

// The overlays use kustomize v5 features (`labels:`, components); kubectl
// bundles kustomize, and an old kubectl (Debian bookworm's kubernetes-client
// is 1.20, with kustomize v2) cannot render them. Returns an error or null.
const MIN_KUSTOMIZE_MAJOR = 5;
export function kustomizeVersionError(kubectl) {
  const result = run(kubectl, ["version", "--client", "-o", "json"], { pkg: "kubectl" });
  if (result.missing || result.failed) return result.missing ?? result.failed;
  let info = {};
  try {
    info = JSON.parse(result.stdout);
  } catch {
    // An unparsable answer is treated as an old kubectl.
  }
  return kustomizeVersionProblem(kubectl, info);
}

// The check on the output of `kubectl version --client -o json` (kubectl
// before 1.24 does not report kustomizeVersion at all).
export function kustomizeVersionProblem(kubectl, info) {
  const version = info?.kustomizeVersion;
  const major = /^v?(\d+)\./.exec(version ?? "")?.[1];
  if (major !== undefined && Number(major) >= MIN_KUSTOMIZE_MAJOR) return null;
  return (
    `${kubectl} ${info?.clientVersion?.gitVersion ?? "(unknown version)"} bundles kustomize ` +
    `${version ?? "older than v4"}: rendering the overlays needs kustomize v${MIN_KUSTOMIZE_MAJOR} ` +
    `or newer, i.e. the package \`kubectl\` at 1.27 or newer`
  );
}

// Renders an overlay with `kubectl kustomize`. Anything on stderr (e.g. the
// deprecation warning for commonLabels) is an error.
export function renderOverlay(dir, { kubectl = "kubectl" } = {}) {
  const errors = [];
  const versionError = kustomizeVersionError(kubectl);
  if (versionError) return { objects: [], errors: [versionError] };
  const result = run(kubectl, ["kustomize", dir], { pkg: "kubectl" });
  if (result.missing || result.failed) {
    return { objects: [], errors: [result.missing ?? result.failed] };
  }
  if (result.status !== 0) {
    return {
      objects: [],
      errors: [`kubectl kustomize ${dir} failed (exit ${result.status ?? result.signal}): ${result.stderr.trim()}`],
    };
  }
  for (const line of result.stderr.split("\n")) {
    if (line.trim() !== "") errors.push(`kubectl kustomize ${dir} printed a warning: ${line.trim()}`);
  }
  const objects = [];
  for (const doc of YAML.parseAllDocuments(result.stdout)) {
    if (doc.errors.length > 0) {
      errors.push(`rendered YAML does not parse: ${doc.errors.map((e) => e.message).join("; ")}`);
      continue;
    }
    const value = doc.toJS();
    if (value === null || value === undefined) continue;
    objects.push(value);
  }
  return { objects, errors };
}

// ---------------------------------------------------------------------------
// Schemas: the model classes and the strict unknown-field check.

const modelCache = new Map();

// The model class for apiVersion/kind, or null. Core and built-in groups
// come from kubernetes-models, monitoring.coreos.com from
// @kubernetes-models/prometheus-operator.
export async function modelFor(apiVersion, kind) {
  if (typeof apiVersion !== "string" || typeof kind !== "string") return null;
  if (!/^[A-Z][A-Za-z0-9]*$/.test(kind) || !/^([a-z0-9.-]+\/)?v[0-9a-z]+$/.test(apiVersion)) return null;
  const key = `${apiVersion}/${kind}`;
  if (modelCache.has(key)) return modelCache.get(key);
  const pkg = apiVersion.startsWith("monitoring.coreos.com/")
    ? "@kubernetes-models/prometheus-operator"
    : "kubernetes-models";
  let cls = null;
  try {
    const mod = await import(`${pkg}/${apiVersion}/${kind}`);
    const candidate = mod[kind];
    // Only top-level kinds carry apiVersion/kind (v1/Container, say, is a
    // part of a Pod, not an object).
    if (candidate && candidate.apiVersion === apiVersion && candidate.kind === kind) cls = candidate;
  } catch (err) {
    if (err?.code !== "ERR_PACKAGE_PATH_NOT_EXPORTED" && err?.code !== "ERR_MODULE_NOT_FOUND") throw err;
  }
  modelCache.set(key, cls);
  return cls;
}

// The packages ship their schemas only as ajv validators compiled to code
// (one `validate` function per definition, in _schemas/*.js, with no schema
// objects). Those validators read every property a schema declares
// (`void 0 !== data.name`) and enumerate the keys of maps
// (additionalProperties), and never look inside a value their schema leaves
// free-form. Running the model's own validator on a proxy of the object
// records, per object node, which keys the schema declares: a key present in
// the object but never read is unknown to the schema.
export function unknownFields(cls, obj) {
  const declared = new Map(); // node -> keys the validator looked up
  const enumerated = new Set(); // nodes whose keys the validator iterated
  const note = (target, key) => {
    if (typeof key !== "string") return;
    let keys = declared.get(target);
    if (!keys) declared.set(target, (keys = new Set()));
    keys.add(key);
  };
  const proxies = new WeakMap();
  const wrap = (value) => {
    if (value === null || typeof value !== "object") return value;
    let proxy = proxies.get(value);
    if (!proxy) {
      proxy = new Proxy(value, {
        get(target, key, receiver) {
          note(target, key);
          return wrap(Reflect.get(target, key, receiver));
        },
        has(target, key) {
          note(target, key);
          return Reflect.has(target, key);
        },
        getOwnPropertyDescriptor(target, key) {
          note(target, key);
          return Reflect.getOwnPropertyDescriptor(target, key);
        },
        ownKeys(target) {
          enumerated.add(target);
          return Reflect.ownKeys(target);
        },
      });
      proxies.set(value, proxy);
    }
    return proxy;
  };
  try {
    cls.prototype.validate.call(wrap(obj));
  } catch {
    // Type errors are reported by the model's validate(); only the keys
    // matter here.
  }
  const found = [];
  const walk = (node, at) => {
    if (Array.isArray(node)) {
      node.forEach((item, i) => walk(item, [...at, i]));
      return;
    }
    if (!isPlainObject(node)) return;
    const keys = declared.get(node);
    // Not looked into (a free-form value) or a map: every key is allowed.
    const open = keys === undefined || enumerated.has(node);
    for (const key of Object.keys(node)) {
      if (!open && !keys.has(key)) {
        found.push({ path: formatPath(at), key });
        continue; // nothing below an unknown key has a schema
      }
      walk(node[key], [...at, key]);
    }
  };
  walk(obj, []);
  return found;
}

// Schema validation (types, formats, enums) and the strict unknown-field
// check for one object.
export async function checkSchema(obj, errors) {
  const id = objectId(obj);
  const cls = await modelFor(obj?.apiVersion, obj?.kind);
  if (!cls) {
    errors.push(
      `${id}: unknown kind ${obj?.apiVersion}/${obj?.kind} (no model in kubernetes-models or ` +
        `@kubernetes-models/prometheus-operator)`,
    );
    return;
  }
  try {
    new cls(obj).validate();
  } catch (err) {
    errors.push(`${id}: schema: ${err.message}`);
  }
  for (const { path: at, key } of unknownFields(cls, obj)) {
    errors.push(`${id}: unknown field "${key}" at ${at}`);
  }
}

// ---------------------------------------------------------------------------
// Workloads, pods, selectors.

const WORKLOAD_KINDS = new Set(["Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job", "CronJob", "Pod"]);

// The pod templates of an overlay: { owner, ns, labels, spec }.
export function podTemplates(objects) {
  const pods = [];
  for (const obj of objects) {
    if (!WORKLOAD_KINDS.has(obj.kind)) continue;
    let template;
    if (obj.kind === "Pod") template = obj;
    else if (obj.kind === "CronJob") template = obj.spec?.jobTemplate?.spec?.template;
    else template = obj.spec?.template;
    if (!template) continue;
    pods.push({ owner: obj, ns: nsOf(obj), labels: template.metadata?.labels ?? {}, spec: template.spec ?? {} });
  }
  return pods;
}

function containersOf(podSpec) {
  return [...asArray(podSpec.initContainers), ...asArray(podSpec.containers)];
}

function containerPortNames(podSpec) {
  const names = new Set();
  for (const c of containersOf(podSpec)) for (const p of asArray(c.ports)) if (p.name) names.add(p.name);
  return names;
}

function containerPortNumbers(podSpec) {
  const numbers = new Set();
  for (const c of containersOf(podSpec)) for (const p of asArray(c.ports)) numbers.add(p.containerPort);
  return numbers;
}

// A metav1.LabelSelector; null or undefined selects nothing, {} everything.
export function selectorMatches(selector, labels) {
  if (!isPlainObject(selector)) return false;
  for (const [k, v] of Object.entries(selector.matchLabels ?? {})) if (labels[k] !== v) return false;
  for (const expr of asArray(selector.matchExpressions)) {
    const has = Object.prototype.hasOwnProperty.call(labels, expr.key);
    const values = asArray(expr.values);
    switch (expr.operator) {
      case "In":
        if (!has || !values.includes(labels[expr.key])) return false;
        break;
      case "NotIn":
        if (has && values.includes(labels[expr.key])) return false;
        break;
      case "Exists":
        if (!has) return false;
        break;
      case "DoesNotExist":
        if (has) return false;
        break;
      default:
        return false;
    }
  }
  return true;
}

// A Service's selector: a plain map; an empty one selects nothing.
function mapSelectorMatches(selector, labels) {
  if (!isPlainObject(selector) || Object.keys(selector).length === 0) return false;
  return Object.entries(selector).every(([k, v]) => labels[k] === v);
}

function selectorKeys(selector) {
  if (!isPlainObject(selector)) return [];
  if (!("matchLabels" in selector) && !("matchExpressions" in selector)) return Object.keys(selector);
  return [...Object.keys(selector.matchLabels ?? {}), ...asArray(selector.matchExpressions).map((e) => e.key)];
}

function describeSelector(selector) {
  return JSON.stringify(selector ?? null);
}

// Every label selector of an object, with where it is: [path, selector].
function selectorsOf(obj) {
  const found = [];
  const podSelectors = (podSpec, at) => {
    for (const [i, t] of asArray(podSpec?.topologySpreadConstraints).entries()) {
      if (t.labelSelector) found.push([`${at}.topologySpreadConstraints[${i}].labelSelector`, t.labelSelector]);
    }
    const affinity = podSpec?.affinity ?? {};
    for (const kind of ["podAffinity", "podAntiAffinity"]) {
      const a = affinity[kind] ?? {};
      for (const [i, term] of asArray(a.requiredDuringSchedulingIgnoredDuringExecution).entries()) {
        if (term.labelSelector) found.push([`${at}.affinity.${kind}.required[${i}].labelSelector`, term.labelSelector]);
      }
      for (const [i, w] of asArray(a.preferredDuringSchedulingIgnoredDuringExecution).entries()) {
        const sel = w.podAffinityTerm?.labelSelector;
        if (sel) found.push([`${at}.affinity.${kind}.preferred[${i}].labelSelector`, sel]);
      }
    }
  };
  switch (obj.kind) {
    case "Deployment":
    case "StatefulSet":
    case "DaemonSet":
    case "ReplicaSet":
      if (obj.spec?.selector) found.push(["spec.selector", obj.spec.selector]);
      podSelectors(obj.spec?.template?.spec, "spec.template.spec");
      break;
    case "Service":
    case "PodDisruptionBudget":
    case "ServiceMonitor":
    case "PodMonitor":
      if (obj.spec?.selector) found.push(["spec.selector", obj.spec.selector]);
      break;
    case "NetworkPolicy":
      if (obj.spec?.podSelector) found.push(["spec.podSelector", obj.spec.podSelector]);
      for (const dir of ["ingress", "egress"]) {
        for (const [i, rule] of asArray(obj.spec?.[dir]).entries()) {
          for (const [j, peer] of asArray(rule[dir === "ingress" ? "from" : "to"]).entries()) {
            if (peer.podSelector) found.push([`spec.${dir}[${i}].peer[${j}].podSelector`, peer.podSelector]);
          }
        }
      }
      break;
    default:
      break;
  }
  return found;
}

// ---------------------------------------------------------------------------
// Quantities (requests must not exceed limits).

const QUANTITY_SUFFIX = {
  "": 1, n: 1e-9, u: 1e-6, m: 1e-3, k: 1e3, M: 1e6, G: 1e9, T: 1e12, P: 1e15, E: 1e18,
  Ki: 2 ** 10, Mi: 2 ** 20, Gi: 2 ** 30, Ti: 2 ** 40, Pi: 2 ** 50, Ei: 2 ** 60,
};

export function parseQuantity(value) {
  if (typeof value === "number") return value;
  const match = /^([+-]?(?:\d+\.?\d*|\.\d+))(?:([eE][+-]?\d+)|(Ki|Mi|Gi|Ti|Pi|Ei|[numkMGTPE])?)$/.exec(String(value));
  if (!match) return NaN;
  const number = Number(match[1] + (match[2] ?? ""));
  return number * QUANTITY_SUFFIX[match[3] ?? ""];
}

// ---------------------------------------------------------------------------
// NATS configuration.

function stripConfComments(text) {
  return text
    .split("\n")
    .map((line) => {
      const trimmed = line.trimStart();
      if (trimmed.startsWith("#") || trimmed.startsWith("//")) return "";
      // A trailing "# ..." after whitespace, outside quotes.
      let quote = null;
      for (let i = 0; i < line.length; i++) {
        const ch = line[i];
        if (quote) {
          if (ch === quote) quote = null;
        } else if (ch === '"' || ch === "'") {
          quote = ch;
        } else if (ch === "#" && i > 0 && /\s/.test(line[i - 1])) {
          return line.slice(0, i);
        }
      }
      return line;
    })
    .join("\n");
}

// The text between the bracket at `open` and its match.
function bracketed(text, open) {
  const pairs = { "{": "}", "[": "]" };
  const close = pairs[text[open]];
  let depth = 0;
  let quote = null;
  for (let i = open; i < text.length; i++) {
    const ch = text[i];
    if (quote) {
      if (ch === quote) quote = null;
      continue;
    }
    if (ch === '"' || ch === "'") quote = ch;
    else if (ch === text[open]) depth++;
    else if (ch === close && --depth === 0) return text.slice(open + 1, i);
  }
  return null;
}

function confBlock(text, key) {
  const match = new RegExp(`(^|[\\s{,])${key}\\s*[:=]?\\s*\\{`, "m").exec(text);
  if (!match) return null;
  return bracketed(text, match.index + match[0].length - 1);
}

function confArray(text, key) {
  const match = new RegExp(`(^|[\\s{,])${key}\\s*[:=]?\\s*\\[`, "m").exec(text);
  if (!match) return null;
  const body = bracketed(text, match.index + match[0].length - 1);
  if (body === null) return null;
  return body
    .split(/[,\n]/)
    .map((s) => s.trim().replace(/^["']|["']$/g, ""))
    .filter((s) => s !== "");
}

function confScalar(text, key) {
  const match = new RegExp(`(^|[\\s{,])${key}\\s*[:=]?\\s*([^\\s,{}\\[\\]]+)`, "m").exec(text);
  return match ? match[2].replace(/^["']|["']$/g, "") : null;
}

// What the NATS configuration says about clustering and JetStream.
export function parseNatsConf(text) {
  const clean = stripConfComments(text);
  const cluster = confBlock(clean, "cluster");
  const jetstream = /(^|[\s{,])(jetstream|JetStream)\s*[:=]?\s*(\{|enabled|true)/m.test(clean);
  const variables = new Set();
  for (const match of clean.matchAll(/\$([A-Za-z_][A-Za-z0-9_]*)/g)) variables.add(match[1]);
  const assigned = new Set();
  for (const match of clean.matchAll(/^\s*([A-Za-z_][A-Za-z0-9_]*)\s*[:=]/gm)) assigned.add(match[1]);
  let clusterPort = null;
  if (cluster !== null) {
    const port = confScalar(cluster.replace(/routes\s*[:=]?\s*\[[^\]]*\]/, ""), "port");
    const listen = confScalar(cluster, "listen");
    clusterPort = Number(port ?? (listen ? listen.split(":").pop() : 6222));
  }
  return {
    cluster: cluster !== null,
    routes: cluster !== null ? (confArray(cluster, "routes") ?? []) : [],
    clusterPort,
    jetstream,
    variables: [...variables].filter((v) => !assigned.has(v)),
  };
}

// An image built from this repository's Dockerfile (natsgw/natsgw-*).
export function isProjectImage(image) {
  const repo = String(image ?? "").split("@")[0].replace(/:[^/:]*$/, "");
  return repo.split("/").pop().startsWith("natsgw");
}

function isNatsImage(image) {
  const repo = String(image ?? "").split("@")[0].replace(/:[^/:]*$/, "");
  return repo.split("/").pop() === "nats";
}

// The file a nats-server container loads: its -c/--config argument resolved
// through the volume mounts to a ConfigMap key of the render.
function natsConfigOf(sts, container, objects, errors) {
  const id = objectId(sts);
  const args = [...asArray(container.command), ...asArray(container.args)];
  let file = null;
  for (let i = 0; i < args.length; i++) {
    const a = String(args[i]);
    if (a === "-c" || a === "--config" || a === "-config") file = args[i + 1];
    else if (/^--?c(onfig)?=/.test(a)) file = a.split("=").slice(1).join("=");
  }
  if (!file) {
    errors.push(`${id}: container ${container.name} does not pass --config to nats-server`);
    return null;
  }
  const mount = asArray(container.volumeMounts)
    .filter((m) => file === m.mountPath || file.startsWith(`${m.mountPath.replace(/\/$/, "")}/`))
    .sort((a, b) => b.mountPath.length - a.mountPath.length)[0];
  if (!mount) {
    errors.push(`${id}: no volume of container ${container.name} is mounted at ${file}`);
    return null;
  }
  const volume = asArray(sts.spec?.template?.spec?.volumes).find((v) => v.name === mount.name);
  if (!volume?.configMap) {
    errors.push(`${id}: volume ${mount.name} holding ${file} is not a ConfigMap volume`);
    return null;
  }
  const relative = mount.subPath ?? path.posix.relative(mount.mountPath, file);
  const item = asArray(volume.configMap.items).find((it) => it.path === relative);
  const key = mount.subPath ? mount.subPath : (item?.key ?? relative);
  const cm = objects.find((o) => o.kind === "ConfigMap" && o.metadata?.name === volume.configMap.name && nsOf(o) === nsOf(sts));
  if (!cm) return null; // reported by the reference check
  const text = cm.data?.[key];
  if (typeof text !== "string") {
    errors.push(`${id}: ConfigMap/${cm.metadata.name} has no key "${key}" (the ${file} nats-server loads)`);
    return null;
  }
  const expanded = expandNatsIncludes(text, cm, errors, `${id}: ${file}`);
  if (expanded === null) return null;
  return { text: expanded, cm, file, key };
}

// `text` with every `include <file>` replaced by that key of the same
// ConfigMap (nats-server resolves includes next to the including file, i.e.
// in the same mounted ConfigMap), so the checks see the whole configuration.
function expandNatsIncludes(text, cm, errors, where, depth = 0) {
  if (depth > 8) {
    errors.push(`${where}: includes nest more than 8 deep`);
    return null;
  }
  let failed = false;
  const out = text.replace(/^[ \t]*include[ \t]+["']?(?:\.\/)?([^"'\s;]+)["']?[ \t]*;?[ \t]*$/gm, (_, name) => {
    const included = cm.data?.[name];
    if (typeof included !== "string") {
      errors.push(`${where}: includes ${name}, which ConfigMap/${cm.metadata.name} does not hold`);
      failed = true;
      return "";
    }
    const inner = expandNatsIncludes(included, cm, errors, `${where} -> ${name}`, depth + 1);
    if (inner === null) failed = true;
    return inner ?? "";
  });
  return failed ? null : out;
}

// Values for the variables a nats.conf references, as nats-server -t needs
// them: the fixed test values for the names the project uses, the
// container's literal values for the rest.
function natsTestEnv(variables, container) {
  const env = { PATH: process.env.PATH ?? "/usr/bin:/bin", SERVER_NAME: "nats-0", NATS_USER: "u", NATS_PASSWORD: "p" };
  for (const name of variables) {
    if (name in env) continue;
    const entry = asArray(container.env).find((e) => e.name === name);
    env[name] = entry && typeof entry.value === "string" ? entry.value : "placeholder";
  }
  return env;
}

function checkNats(objects, ctx, errors) {
  const statefulSets = objects.filter(
    (o) => o.kind === "StatefulSet" && asArray(o.spec?.template?.spec?.containers).some((c) => isNatsImage(c.image)),
  );
  for (const sts of statefulSets) {
    const id = objectId(sts);
    const container = sts.spec.template.spec.containers.find((c) => isNatsImage(c.image));
    const conf = natsConfigOf(sts, container, objects, errors);
    if (!conf) continue;
    ctx.natsConfigs++;
    const parsed = parseNatsConf(conf.text);
    const replicas = sts.spec?.replicas ?? 1;
    if (!parsed.jetstream) errors.push(`${id}: ${conf.file} does not enable JetStream`);
    if (replicas > 1 && !parsed.cluster) {
      errors.push(`${id}: ${replicas} replicas but ${conf.file} has no cluster block`);
    }
    if (parsed.cluster) {
      if (parsed.routes.length !== replicas) {
        errors.push(
          `${id}: ${conf.file} lists ${parsed.routes.length} cluster routes for ${replicas} replicas ` +
            `(${parsed.routes.join(", ") || "none"})`,
        );
      }
      const svc = sts.spec?.serviceName;
      const ns = nsOf(sts);
      const wanted = new Set();
      for (let i = 0; i < replicas; i++) wanted.add(`${sts.metadata.name}-${i}`);
      for (const route of parsed.routes) {
        let url;
        try {
          url = new URL(route);
        } catch {
          errors.push(`${id}: cluster route "${route}" is not a URL`);
          continue;
        }
        const [pod, ...domain] = url.hostname.split(".");
        const suffix = domain.join(".");
        const okDomain = [svc, `${svc}.${ns}`, `${svc}.${ns}.svc`, `${svc}.${ns}.svc.cluster.local`].includes(suffix);
        if (!wanted.has(pod) || !okDomain) {
          errors.push(
            `${id}: cluster route ${route} is not <${sts.metadata.name}-N>.${svc} (N < ${replicas}) behind the governing Service`,
          );
        } else {
          wanted.delete(pod);
        }
        if (Number(url.port) !== parsed.clusterPort) {
          errors.push(`${id}: cluster route ${route} does not use the cluster port ${parsed.clusterPort}`);
        }
      }
    }
    // Every $VARIABLE of the file must be set in the container's env.
    const defined = new Set(asArray(container.env).map((e) => e.name));
    for (const from of asArray(container.envFrom)) {
      const ref = from.configMapRef ?? from.secretRef;
      const kind = from.configMapRef ? "ConfigMap" : "Secret";
      const src = objects.find((o) => o.kind === kind && o.metadata?.name === ref?.name && nsOf(o) === nsOf(sts));
      for (const k of Object.keys({ ...(src?.data ?? {}), ...(src?.stringData ?? {}) })) defined.add(`${from.prefix ?? ""}${k}`);
    }
    for (const name of parsed.variables) {
      if (!defined.has(name)) {
        errors.push(`${id}: ${conf.file} uses $${name} but container ${container.name} does not set ${name}`);
      }
    }
    // nats-server itself checks the file, with the ConfigMap's other keys
    // beside it as in the pod (for its includes).
    withTempFiles(conf.cm.data, (dir) => {
      const result = run("nats-server", ["-t", "-c", path.join(dir, conf.key)], {
        pkg: "nats-server",
        env: natsTestEnv(parsed.variables, container),
        timeoutMs: 30000,
      });
      if (result.missing || result.failed) {
        errors.push(result.missing ?? result.failed);
      } else if (result.status !== 0) {
        errors.push(
          `${id}: nats-server -t rejects ${conf.file} from ConfigMap/${conf.cm.metadata.name}: ` +
            `${(result.stderr + result.stdout).trim()}`,
        );
      }
    });
  }
  return statefulSets;
}

// ---------------------------------------------------------------------------
// PrometheusRule and dashboard against monitoring/.

export function expectedRuleGroups(root) {
  const dir = path.join(root, "monitoring", "prometheus", "rules");
  const groups = [];
  for (const file of RULE_FILES) {
    const doc = YAML.parse(fs.readFileSync(path.join(dir, file), "utf8"));
    groups.push(...asArray(doc?.groups));
  }
  return groups;
}

// The first path where two values differ, for the error message.
function firstDifference(a, b, at = []) {
  if (isDeepStrictEqual(a, b)) return null;
  if (Array.isArray(a) && Array.isArray(b)) {
    for (let i = 0; i < Math.max(a.length, b.length); i++) {
      if (i >= a.length || i >= b.length) return formatPath([...at, i]);
      const d = firstDifference(a[i], b[i], [...at, i]);
      if (d) return d;
    }
  } else if (isPlainObject(a) && isPlainObject(b)) {
    for (const k of new Set([...Object.keys(a), ...Object.keys(b)])) {
      const d = firstDifference(a[k], b[k], [...at, k]);
      if (d) return d;
    }
  }
  return formatPath(at);
}

export function checkPrometheusRule(rule, root, errors, { compare = true } = {}) {
  const id = objectId(rule);
  const spec = rule.spec ?? {};
  if (compare) {
    const expected = expectedRuleGroups(root);
    if (!isDeepStrictEqual(spec.groups, expected)) {
      errors.push(
        `${id}: spec.groups differ from monitoring/prometheus/rules/{${RULE_FILES.join(",")}} ` +
          `(first difference at spec.${firstDifference(spec.groups, expected, ["groups"])}); ` +
          `the expected spec:\n${YAML.stringify({ spec: { groups: expected } }, { lineWidth: 0 })}`,
      );
    }
  }
  withTempFile("rules.yml", YAML.stringify(spec, { lineWidth: 0 }), (file) => {
    const result = run("promtool", ["check", "rules", file], { pkg: "prometheus", timeoutMs: 30000 });
    if (result.missing || result.failed) {
      errors.push(result.missing ?? result.failed);
    } else if (result.status !== 0) {
      errors.push(`${id}: promtool check rules rejects its spec: ${(result.stderr + result.stdout).trim()}`);
    }
  });
}

export function checkDashboards(cm, root, errors) {
  const id = objectId(cm);
  const dir = path.join(root, "monitoring", "grafana");
  for (const [key, value] of Object.entries(cm.data ?? {})) {
    const file = path.join(dir, key);
    if (!fs.existsSync(file)) {
      errors.push(`${id}: data key ${key} is not a dashboard of monitoring/grafana/`);
      continue;
    }
    const want = fs.readFileSync(file, "utf8");
    if (value !== want) {
      let at = 0;
      while (at < want.length && value[at] === want[at]) at++;
      const line = want.slice(0, at).split("\n").length;
      errors.push(
        `${id}: data key ${key} differs from monitoring/grafana/${key} ` +
          `(${value.length} vs ${want.length} characters, first difference at character ${at}, line ${line})`,
      );
    }
  }
  if (Object.keys(cm.binaryData ?? {}).length > 0) errors.push(`${id}: dashboards belong in data, not binaryData`);
}

// ---------------------------------------------------------------------------
// Files named on command lines, the project's workloads, the image.

// The absolute paths a container's command line names: the values of
// `--flag=/a,/b` and arguments that are paths themselves, each with the
// argument it came from. [] for anything else (URLs, numbers, names).
export function pathArguments(container) {
  const found = [];
  const words = [...asArray(container.command).slice(1), ...asArray(container.args)].map(String);
  for (const word of words) {
    const value = /^--?[A-Za-z0-9_.-]+=(.*)$/s.exec(word)?.[1] ?? (word.startsWith("-") ? null : word);
    if (value === null) continue;
    for (const part of value.split(",")) {
      if (part.startsWith("/")) found.push({ arg: word, path: path.posix.normalize(part).replace(/(.)\/$/, "$1") });
    }
  }
  return found;
}

// The volume mount holding `file` (the longest mountPath containing it).
function mountOf(container, file) {
  return asArray(container.volumeMounts)
    .filter((m) => typeof m.mountPath === "string")
    .filter((m) => {
      const dir = m.mountPath.replace(/\/$/, "");
      return file === dir || file.startsWith(`${dir}/`);
    })
    .sort((a, b) => b.mountPath.length - a.mountPath.length)[0];
}

// A path named on a command line that lies in a ConfigMap or Secret volume
// must be one of the volume's files: an item's path, or (without items) a key
// of the object. A typo there is a file the program cannot open at start.
export function checkFileArguments(objects, errors, externalSecrets = {}) {
  for (const pod of podTemplates(objects)) {
    const id = objectId(pod.owner);
    for (const c of containersOf(pod.spec)) {
      for (const { arg, path: file } of pathArguments(c)) {
        const mount = mountOf(c, file);
        if (!mount) continue;
        const volume = asArray(pod.spec.volumes).find((v) => v.name === mount.name);
        const source = volume?.secret ?? volume?.configMap;
        if (!source) continue; // emptyDir, PVC, ...: written at run time
        const kind = volume.secret ? "Secret" : "ConfigMap";
        const name = volume.secret ? volume.secret.secretName : volume.configMap.name;
        const dir = mount.mountPath.replace(/\/$/, "");
        let relative = file === dir ? "" : file.slice(dir.length + 1);
        if (mount.subPath) relative = file === dir ? mount.subPath : `${mount.subPath}/${relative}`;
        if (relative === "") continue; // the directory itself
        const where = `${id}: container ${c.name}: ${arg}`;
        const items = asArray(source.items);
        let key = relative;
        if (items.length > 0) {
          const item = items.find((it) => it.path === relative);
          if (!item) {
            errors.push(
              `${where}: volume ${volume.name} (${kind}/${name}) mounted at ${mount.mountPath} has no file ` +
                `${relative} (its items: ${items.map((it) => it.path).join(", ")})`,
            );
            continue;
          }
          key = item.key;
        }
        if (kind === "Secret" && name in externalSecrets) continue; // its keys are the operator's
        const target = objects.find((o) => o.kind === kind && o.metadata?.name === name && nsOf(o) === pod.ns);
        if (!target || source.optional) continue; // a missing object is reported by the reference check
        const keys = Object.keys({ ...(target.data ?? {}), ...(target.binaryData ?? {}), ...(target.stringData ?? {}) });
        if (!keys.includes(key)) {
          errors.push(`${where}: ${kind}/${name} mounted at ${mount.mountPath} has no key ${key} (keys: ${keys.join(", ") || "none"})`);
        }
      }
    }
  }
}

// The container port a Service port sends to, on one pod template.
function servicePortTargets(svcPort, podSpec, containerPort) {
  const target = svcPort.targetPort ?? svcPort.port;
  if (typeof target === "string" && !/^\d+$/.test(target)) return target === containerPort.name;
  return Number(target) === containerPort.containerPort;
}

// The project's workloads (pods running the project image) are all run the
// same way, whichever binary they run: probes and the drain hook, a
// NetworkPolicy restricting both directions, a PodDisruptionBudget, and the
// metrics port scraped by a ServiceMonitor or a PodMonitor.
export function checkProjectWorkloads(objects, errors) {
  const pods = podTemplates(objects);
  const inNs = (list, ns) => list.filter((o) => nsOf(o) === ns);
  const services = objects.filter((o) => o.kind === "Service");
  for (const pod of pods) {
    const project = containersOf(pod.spec).filter((c) => isProjectImage(c.image));
    if (project.length === 0) continue;
    const id = objectId(pod.owner);
    for (const c of project) {
      const where = `${id}: container ${c.name}`;
      if (!c.readinessProbe) errors.push(`${where}: no readinessProbe (/readyz)`);
      if (!c.livenessProbe) errors.push(`${where}: no livenessProbe (/healthz)`);
      if (!c.lifecycle?.preStop) errors.push(`${where}: no lifecycle.preStop hook (/drainz)`);
      const metrics = asArray(c.ports).find((p) => p.name === METRICS_PORT_NAME);
      if (!metrics) {
        errors.push(`${where}: no container port named ${METRICS_PORT_NAME} (--metrics_port)`);
        continue;
      }
      const byServiceMonitor = inNs(objects, pod.ns)
        .filter((o) => o.kind === "ServiceMonitor")
        .some((sm) =>
          services
            .filter((svc) => {
              const nsSel = sm.spec?.namespaceSelector ?? {};
              const inScope =
                nsSel.any === true ||
                (asArray(nsSel.matchNames).length > 0 ? nsSel.matchNames.includes(nsOf(svc)) : nsOf(svc) === nsOf(sm));
              return (
                inScope &&
                nsOf(svc) === pod.ns &&
                selectorMatches(sm.spec?.selector, svc.metadata?.labels ?? {}) &&
                mapSelectorMatches(svc.spec?.selector, pod.labels)
              );
            })
            .some((svc) =>
              asArray(sm.spec?.endpoints).some((ep) =>
                asArray(svc.spec?.ports).some((p) => p.name === ep.port && servicePortTargets(p, pod.spec, metrics)),
              ),
            ),
        );
      const byPodMonitor = inNs(objects, pod.ns)
        .filter((o) => o.kind === "PodMonitor" && selectorMatches(o.spec?.selector, pod.labels))
        .some((pm) => asArray(pm.spec?.podMetricsEndpoints).some((ep) => ep.port === metrics.name));
      if (!byServiceMonitor && !byPodMonitor) {
        errors.push(`${where}: port ${METRICS_PORT_NAME} is scraped by no ServiceMonitor or PodMonitor`);
      }
    }
    const policies = inNs(objects, pod.ns).filter(
      (o) => o.kind === "NetworkPolicy" && selectorMatches(o.spec?.podSelector, pod.labels),
    );
    const types = new Set();
    for (const np of policies) {
      // Without policyTypes, Ingress always and Egress when egress rules exist.
      const declared = asArray(np.spec?.policyTypes);
      if (declared.length > 0) declared.forEach((t) => types.add(t));
      else {
        types.add("Ingress");
        if (np.spec?.egress !== undefined) types.add("Egress");
      }
    }
    const missing = ["Ingress", "Egress"].filter((t) => !types.has(t));
    if (missing.length > 0) errors.push(`${id}: no NetworkPolicy restricts its pods' ${missing.join(" and ").toLowerCase()}`);
    const pdbs = inNs(objects, pod.ns).filter(
      (o) => o.kind === "PodDisruptionBudget" && selectorMatches(o.spec?.selector, pod.labels),
    );
    if (pod.owner.kind !== "Pod" && pod.owner.kind !== "Job" && pod.owner.kind !== "CronJob" && pdbs.length === 0) {
      errors.push(`${id}: no PodDisruptionBudget selects its pods`);
    }
  }
}

// The Dockerfile as instructions: comments dropped (also inside continued
// instructions, as Docker does), continuation lines joined.
function dockerInstructions(text) {
  const out = [];
  let cont = "";
  for (let line of text.split("\n")) {
    line = line.replace(/\r$/, "");
    if (/^\s*#/.test(line)) continue;
    if (cont !== "" && /^\s*$/.test(line)) continue;
    line = cont + line;
    if (/\\\s*$/.test(line)) {
      cont = line.replace(/\\\s*$/, " ");
      continue;
    }
    cont = "";
    if (line.trim() !== "") out.push(line.trim());
  }
  if (cont.trim() !== "") out.push(cont.trim());
  return out;
}

// What the image built from <root>/Dockerfile holds, as far as the manifests
// name it: { files, dirs } of its last stage's COPY destinations (from the
// build stage: the named files; from the build context: the files the
// sources match, `*` allowed in their last component) and the directories of
// `install -d` and VOLUME. `dockerfile` overrides the file's text.
export function imageLayout(root, dockerfile) {
  const text = dockerfile ?? fs.readFileSync(path.join(root, "Dockerfile"), "utf8");
  const stages = [];
  for (const ins of dockerInstructions(text)) {
    const [kw] = ins.split(/\s+/, 1);
    if (kw.toUpperCase() === "FROM") stages.push([]);
    else if (stages.length > 0) stages[stages.length - 1].push({ kw: kw.toUpperCase(), args: ins.slice(kw.length).trim() });
  }
  const files = new Set();
  const dirs = new Set();
  const addDir = (d) => {
    for (let p = path.posix.normalize(d).replace(/\/$/, ""); p !== "" && p !== "/"; p = path.posix.dirname(p)) dirs.add(p);
  };
  const addFile = (f) => {
    files.add(path.posix.normalize(f));
    addDir(path.posix.dirname(f));
  };
  for (const { kw, args } of stages[stages.length - 1] ?? []) {
    if (kw === "COPY" || kw === "ADD") {
      const words = args.split(/\s+/);
      const fromBuild = words.some((w) => w.startsWith("--from="));
      const paths = words.filter((w) => !w.startsWith("--"));
      if (paths.length < 2 || paths[0].startsWith("[")) continue;
      const dest = paths.pop();
      const sources = [];
      for (const src of paths) {
        if (fromBuild) {
          sources.push(src);
          continue;
        }
        const dir = path.join(root, path.posix.dirname(src));
        const pattern = new RegExp(`^${path.posix.basename(src).replace(/[.+^${}()|[\]\\]/g, "\\$&").replace(/\*/g, "[^/]*").replace(/\?/g, "[^/]")}$`);
        if (!fs.existsSync(dir)) continue;
        for (const entry of fs.readdirSync(dir).sort()) {
          if (pattern.test(entry) && fs.statSync(path.join(dir, entry)).isFile()) sources.push(entry);
        }
      }
      const toDir = dest.endsWith("/") || paths.length > 1 || paths.some((p) => /[*?]/.test(p));
      if (toDir) for (const src of sources) addFile(path.posix.join(dest, path.posix.basename(src)));
      else if (sources.length === 1) addFile(dest);
    } else if (kw === "RUN") {
      for (const match of args.matchAll(/\binstall\s+((?:[^&|;]*?\s)?-d\s[^&|;]*)/g)) {
        for (const word of match[1].split(/\s+/)) if (word.startsWith("/")) addDir(word);
      }
    } else if (kw === "VOLUME") {
      for (const match of args.matchAll(/"(\/[^"]+)"|(?:^|\s)(\/\S+)/g)) addDir(match[1] ?? match[2]);
    }
  }
  return { files, dirs };
}

// The project's containers run what the image holds: the program is one of
// the files the Dockerfile puts into it, and every path on the command line
// that is not in a volume is a file or directory of the image (the schemas
// of --schema, say).
export function checkImageContents(objects, layout, errors) {
  for (const pod of podTemplates(objects)) {
    const id = objectId(pod.owner);
    for (const c of containersOf(pod.spec).filter((x) => isProjectImage(x.image))) {
      const where = `${id}: container ${c.name}`;
      const program = asArray(c.command)[0];
      if (program === undefined) {
        errors.push(`${where}: no command (name the binary of the image it runs)`);
      } else if (!layout.files.has(String(program))) {
        errors.push(`${where}: runs ${program}, which the image (Dockerfile) does not contain`);
      }
      for (const { arg, path: file } of pathArguments(c)) {
        if (mountOf(c, file)) continue;
        if (!layout.files.has(file) && !layout.dirs.has(file)) {
          errors.push(`${where}: ${arg} names ${file}, which is neither in the image (Dockerfile) nor in a volume`);
        }
      }
    }
  }
}

// The project's containers pass only flags their binary accepts, with values
// it parses: each binary (built, in binDir) is run with the container's
// command line and Abseil's --only_check_args, which parses every flag and
// exits without doing anything else. An unknown flag (say, one an overlay
// patch adds to a Deployment whose binary does not have it) would otherwise
// be found only by a crash loop. Returns the number of containers checked.
export function checkProjectFlags(objects, binDir, errors) {
  let checked = 0;
  for (const pod of podTemplates(objects)) {
    const id = objectId(pod.owner);
    for (const c of containersOf(pod.spec).filter((x) => isProjectImage(x.image))) {
      const where = `${id}: container ${c.name}`;
      const program = asArray(c.command)[0];
      if (program === undefined) continue; // reported by checkImageContents
      const binary = path.join(binDir, path.posix.basename(String(program)));
      if (!fs.existsSync(binary)) {
        errors.push(`${where}: ${binary} is not built: build it to check the flags of ${program}`);
        continue;
      }
      const argv = [...asArray(c.command).slice(1), ...asArray(c.args)].map(String);
      const result = run(binary, [...argv, "--only_check_args"], {
        pkg: "(the project's build)",
        env: { PATH: process.env.PATH ?? "/usr/bin:/bin" },
        timeoutMs: 20000,
      });
      checked++;
      if (result.missing || result.failed) errors.push(`${where}: ${result.missing ?? result.failed}`);
      else if (result.status !== 0) {
        errors.push(
          `${where}: ${path.posix.basename(String(program))} rejects its arguments ${JSON.stringify(argv)}: ` +
            `${(result.stderr + result.stdout).trim() || `exit ${result.status ?? result.signal}`}`,
        );
      }
    }
  }
  return checked;
}

// The job values the project's rules select (`job="..."`).
export function ruleJobs(root) {
  const jobs = new Set();
  const text = JSON.stringify(expectedRuleGroups(root));
  for (const match of text.matchAll(/\bjob\s*=~?\s*\\"([^"\\]+)\\"/g)) jobs.add(match[1]);
  return jobs;
}

// Prometheus must see the project's targets under the job the rules select
// (a ServiceMonitor's job is the value of the Service's label named by
// jobLabel, else the Service's name; a PodMonitor's the pod's label, else
// <namespace>/<name>): otherwise the alerts on the job stay silent.
export function checkMonitorJobs(objects, jobs, errors) {
  if (jobs.size === 0) return;
  const want = [...jobs].map((j) => `job="${j}"`).join(" or ");
  const pods = podTemplates(objects).filter((p) => containersOf(p.spec).some((c) => isProjectImage(c.image)));
  for (const sm of objects.filter((o) => o.kind === "ServiceMonitor")) {
    for (const svc of objects.filter((o) => o.kind === "Service" && nsOf(o) === nsOf(sm))) {
      if (!selectorMatches(sm.spec?.selector, svc.metadata?.labels ?? {})) continue;
      if (!pods.some((p) => p.ns === nsOf(svc) && mapSelectorMatches(svc.spec?.selector, p.labels))) continue;
      const job = (sm.spec?.jobLabel && svc.metadata?.labels?.[sm.spec.jobLabel]) || svc.metadata?.name;
      if (!jobs.has(job)) {
        errors.push(`${objectId(sm)}: scrapes ${objectId(svc)} as job "${job}", but the rules of monitoring/ select ${want}`);
      }
    }
  }
  for (const pm of objects.filter((o) => o.kind === "PodMonitor")) {
    for (const pod of pods.filter((p) => p.ns === nsOf(pm) && selectorMatches(pm.spec?.selector, p.labels))) {
      const job = (pm.spec?.jobLabel && pod.labels[pm.spec.jobLabel]) || `${nsOf(pm)}/${pm.metadata?.name}`;
      if (!jobs.has(job)) {
        errors.push(`${objectId(pm)}: scrapes the pods of ${objectId(pod.owner)} as job "${job}", but the rules of monitoring/ select ${want}`);
      }
    }
  }
}

// ---------------------------------------------------------------------------
// The semantic checks of one overlay.

export function checkSemantics(objects, ctx, errors) {
  const pods = podTemplates(objects);
  const byKind = (kind) => objects.filter((o) => o.kind === kind);
  const inNs = (list, ns) => list.filter((o) => (o.ns ?? nsOf(o)) === ns);
  const externalSecrets = EXTERNAL_SECRETS[ctx.overlay] ?? {};

  // Namespaces and duplicates.
  const seen = new Set();
  for (const obj of objects) {
    const id = objectId(obj);
    const key = `${obj.apiVersion}/${obj.kind}/${obj.metadata?.namespace ?? ""}/${obj.metadata?.name}`;
    if (seen.has(key)) errors.push(`${id}: rendered twice`);
    seen.add(key);
    if (!CLUSTER_SCOPED.has(obj.kind) && !obj.metadata?.namespace) {
      errors.push(`${id}: no metadata.namespace (the overlay must set namespace:)`);
    }
  }
  const namespaces = new Set(objects.filter((o) => !CLUSTER_SCOPED.has(o.kind)).map((o) => o.metadata?.namespace));
  if (namespaces.size > 1) errors.push(`objects in several namespaces: ${[...namespaces].join(", ")}`);

  // Recommended labels on every object and pod template.
  const checkLabels = (labels, where) => {
    labels = labels ?? {};
    if (!labels[LABEL_NAME]) errors.push(`${where}: no label ${LABEL_NAME}`);
    if (labels[LABEL_PART_OF] !== PART_OF) {
      errors.push(`${where}: label ${LABEL_PART_OF} is ${JSON.stringify(labels[LABEL_PART_OF] ?? null)}, not "${PART_OF}"`);
    }
    if (labels[LABEL_VERSION] !== ctx.version) {
      errors.push(
        `${where}: label ${LABEL_VERSION} is ${JSON.stringify(labels[LABEL_VERSION] ?? null)}, ` +
          `not the project version "${ctx.version}"`,
      );
    }
  };
  for (const obj of objects) checkLabels(obj.metadata?.labels, objectId(obj));
  for (const pod of pods) if (pod.owner.kind !== "Pod") checkLabels(pod.labels, `${objectId(pod.owner)}: pod template`);

  // No selector may use the version label (it changes on every release,
  // and Deployment selectors are immutable).
  for (const obj of objects) {
    for (const [at, sel] of selectorsOf(obj)) {
      if (selectorKeys(sel).includes(LABEL_VERSION)) {
        errors.push(`${objectId(obj)}: ${at} uses ${LABEL_VERSION}`);
      }
    }
  }

  // Workload selectors match their templates.
  for (const obj of objects) {
    if (!["Deployment", "StatefulSet", "DaemonSet", "ReplicaSet"].includes(obj.kind)) continue;
    const labels = obj.spec?.template?.metadata?.labels ?? {};
    if (!selectorMatches(obj.spec?.selector, labels)) {
      errors.push(
        `${objectId(obj)}: spec.selector ${describeSelector(obj.spec?.selector)} does not match ` +
          `the pod template labels ${JSON.stringify(labels)}`,
      );
    }
  }

  // Containers: ports, probes, security, resources, images.
  for (const pod of pods) {
    const id = objectId(pod.owner);
    const podSec = pod.spec.securityContext ?? {};
    for (const c of containersOf(pod.spec)) {
      const where = `${id}: container ${c.name}`;
      const names = new Set(asArray(c.ports).map((p) => p.name).filter(Boolean));
      const probes = [
        ["livenessProbe", c.livenessProbe],
        ["readinessProbe", c.readinessProbe],
        ["startupProbe", c.startupProbe],
        ["lifecycle.preStop", c.lifecycle?.preStop],
        ["lifecycle.postStart", c.lifecycle?.postStart],
      ];
      for (const [what, probe] of probes) {
        for (const handler of ["httpGet", "tcpSocket"]) {
          const port = probe?.[handler]?.port;
          if (typeof port === "string" && !/^\d+$/.test(port) && !names.has(port)) {
            errors.push(`${where}: ${what}.${handler}.port "${port}" is not a port name of the container`);
          }
        }
      }
      const sec = c.securityContext ?? {};
      const nonRoot = sec.runAsNonRoot ?? podSec.runAsNonRoot;
      const user = sec.runAsUser ?? podSec.runAsUser;
      if (nonRoot !== true) errors.push(`${where}: runAsNonRoot is not true (container or pod securityContext)`);
      if (user === 0) errors.push(`${where}: runAsUser is 0`);
      if (sec.readOnlyRootFilesystem !== true) errors.push(`${where}: securityContext.readOnlyRootFilesystem is not true`);
      if (sec.allowPrivilegeEscalation !== false) {
        errors.push(`${where}: securityContext.allowPrivilegeEscalation is not false`);
      }
      if (sec.privileged === true) errors.push(`${where}: privileged`);
      if (!asArray(sec.capabilities?.drop).includes("ALL")) errors.push(`${where}: capabilities.drop lacks ALL`);
      for (const kind of ["requests", "limits"]) {
        for (const resource of ["cpu", "memory"]) {
          if (c.resources?.[kind]?.[resource] === undefined) errors.push(`${where}: no resources.${kind}.${resource}`);
        }
      }
      for (const resource of Object.keys(c.resources?.requests ?? {})) {
        const req = parseQuantity(c.resources.requests[resource]);
        const lim = c.resources?.limits?.[resource];
        if (lim !== undefined && req > parseQuantity(lim)) {
          errors.push(`${where}: resources.requests.${resource} ${c.resources.requests[resource]} exceeds the limit ${lim}`);
        }
      }
      const image = String(c.image ?? "");
      const [repoTag] = image.split("@");
      const tagMatch = /:([^/:]+)$/.exec(repoTag);
      if (!image) errors.push(`${where}: no image`);
      else if (!tagMatch && !image.includes("@")) errors.push(`${where}: image ${image} has no tag`);
      else if (tagMatch?.[1] === "latest") errors.push(`${where}: image ${image} uses the tag latest`);
      const repoName = repoTag.replace(/:[^/:]+$/, "").split("/").pop();
      if (repoName.startsWith("natsgw")) {
        ctx.ourImages++;
        if (tagMatch?.[1] !== ctx.version) errors.push(`${where}: image ${image} is not tagged with the project version ${ctx.version}`);
      }
    }
  }

  // References to ConfigMaps and Secrets.
  const hasObject = (kind, name, ns) => objects.find((o) => o.kind === kind && o.metadata?.name === name && nsOf(o) === ns);
  const usedExternal = new Set();
  const checkRef = (kind, name, key, optional, ns, where) => {
    if (kind === "Secret" && name in externalSecrets) {
      usedExternal.add(name);
      return;
    }
    const target = hasObject(kind, name, ns);
    if (!target) {
      if (!optional) errors.push(`${where}: references ${kind}/${name}, which the overlay does not render`);
      return;
    }
    if (key !== undefined) {
      const keys = new Set([
        ...Object.keys(target.data ?? {}),
        ...Object.keys(target.binaryData ?? {}),
        ...Object.keys(target.stringData ?? {}),
      ]);
      if (!keys.has(key) && !optional) errors.push(`${where}: ${kind}/${name} has no key "${key}"`);
    }
  };
  for (const pod of pods) {
    const id = objectId(pod.owner);
    for (const c of containersOf(pod.spec)) {
      const where = `${id}: container ${c.name}`;
      for (const from of asArray(c.envFrom)) {
        if (from.configMapRef) checkRef("ConfigMap", from.configMapRef.name, undefined, from.configMapRef.optional, pod.ns, where);
        if (from.secretRef) checkRef("Secret", from.secretRef.name, undefined, from.secretRef.optional, pod.ns, where);
      }
      for (const env of asArray(c.env)) {
        const cmRef = env.valueFrom?.configMapKeyRef;
        const secretRef = env.valueFrom?.secretKeyRef;
        if (cmRef) checkRef("ConfigMap", cmRef.name, cmRef.key, cmRef.optional, pod.ns, `${where}: env ${env.name}`);
        if (secretRef) checkRef("Secret", secretRef.name, secretRef.key, secretRef.optional, pod.ns, `${where}: env ${env.name}`);
      }
    }
    for (const v of asArray(pod.spec.volumes)) {
      const where = `${id}: volume ${v.name}`;
      const sources = [v, ...asArray(v.projected?.sources)];
      for (const s of sources) {
        if (s.configMap) {
          const items = asArray(s.configMap.items);
          if (items.length === 0) checkRef("ConfigMap", s.configMap.name, undefined, s.configMap.optional, pod.ns, where);
          for (const it of items) checkRef("ConfigMap", s.configMap.name, it.key, s.configMap.optional, pod.ns, where);
        }
        const secret = s.secret;
        if (secret) {
          const name = secret.secretName ?? secret.name;
          const items = asArray(secret.items);
          if (items.length === 0) checkRef("Secret", name, undefined, secret.optional, pod.ns, where);
          for (const it of items) checkRef("Secret", name, it.key, secret.optional, pod.ns, where);
        }
      }
    }
    for (const ref of asArray(pod.spec.imagePullSecrets)) {
      checkRef("Secret", ref.name, undefined, false, pod.ns, `${id}: imagePullSecrets`);
    }
  }
  for (const [name, reason] of Object.entries(externalSecrets)) {
    if (objects.some((o) => o.kind === "Secret" && nameMatches(o.metadata?.name ?? "", name))) {
      errors.push(`Secret/${name} is rendered, but the ${ctx.overlay} overlay must leave it to the operator (${reason})`);
    }
    if (!usedExternal.has(name)) {
      errors.push(`Secret/${name} is listed as created outside the ${ctx.overlay} overlay but nothing references it`);
    }
  }

  // Services select pods; named target ports exist on them.
  const services = byKind("Service");
  for (const svc of services) {
    const id = objectId(svc);
    if (svc.spec?.type === "ExternalName") continue;
    const selected = inNs(pods, nsOf(svc)).filter((p) => mapSelectorMatches(svc.spec?.selector, p.labels));
    if (selected.length === 0) {
      errors.push(`${id}: spec.selector ${describeSelector(svc.spec?.selector)} selects no pod template`);
      continue;
    }
    for (const port of asArray(svc.spec?.ports)) {
      const target = port.targetPort ?? port.port;
      for (const p of selected) {
        if (typeof target === "string" && !/^\d+$/.test(target)) {
          if (!containerPortNames(p.spec).has(target)) {
            errors.push(`${id}: port ${port.name ?? port.port} targetPort "${target}" is not a container port name of ${objectId(p.owner)}`);
          }
        } else if (!containerPortNumbers(p.spec).has(Number(target))) {
          errors.push(`${id}: port ${port.name ?? port.port} targetPort ${target} is not a containerPort of ${objectId(p.owner)}`);
        }
      }
    }
  }

  // StatefulSets have a headless governing Service; NATS's publishes
  // not-ready addresses (routes must resolve before the pods are Ready).
  for (const sts of byKind("StatefulSet")) {
    const id = objectId(sts);
    const svc = services.find((s) => s.metadata?.name === sts.spec?.serviceName && nsOf(s) === nsOf(sts));
    if (!svc) {
      errors.push(`${id}: serviceName ${JSON.stringify(sts.spec?.serviceName ?? null)} is not a Service of the overlay`);
      continue;
    }
    if (svc.spec?.clusterIP !== "None") errors.push(`${objectId(svc)}: governs ${id} but is not headless (clusterIP: None)`);
    if (!mapSelectorMatches(svc.spec?.selector, sts.spec?.template?.metadata?.labels ?? {})) {
      errors.push(`${objectId(svc)}: governs ${id} but does not select its pods`);
    }
    const isNats = asArray(sts.spec?.template?.spec?.containers).some((c) => isNatsImage(c.image));
    if (isNats && svc.spec?.publishNotReadyAddresses !== true) {
      errors.push(`${objectId(svc)}: the headless NATS Service needs publishNotReadyAddresses: true`);
    }
  }

  // ServiceMonitors select Services; endpoint ports are Service port names.
  for (const sm of byKind("ServiceMonitor")) {
    const id = objectId(sm);
    const nsSel = sm.spec?.namespaceSelector ?? {};
    const inScope = (o) =>
      nsSel.any === true || (asArray(nsSel.matchNames).length > 0 ? nsSel.matchNames.includes(nsOf(o)) : nsOf(o) === nsOf(sm));
    const selected = services.filter((s) => inScope(s) && selectorMatches(sm.spec?.selector, s.metadata?.labels ?? {}));
    if (selected.length === 0) {
      errors.push(`${id}: spec.selector ${describeSelector(sm.spec?.selector)} selects no Service`);
      continue;
    }
    for (const [i, ep] of asArray(sm.spec?.endpoints).entries()) {
      if (ep.port === undefined) {
        errors.push(`${id}: endpoints[${i}] has no port (a Service port name)`);
        continue;
      }
      for (const s of selected) {
        if (!asArray(s.spec?.ports).some((p) => p.name === ep.port)) {
          errors.push(`${id}: endpoints[${i}].port "${ep.port}" is not a port name of ${objectId(s)}`);
        }
      }
    }
  }

  // PodMonitors select pods; endpoint ports are container port names.
  for (const pm of byKind("PodMonitor")) {
    const id = objectId(pm);
    const selected = inNs(pods, nsOf(pm)).filter((p) => selectorMatches(pm.spec?.selector, p.labels));
    if (selected.length === 0) {
      errors.push(`${id}: spec.selector ${describeSelector(pm.spec?.selector)} selects no pod template`);
      continue;
    }
    for (const [i, ep] of asArray(pm.spec?.podMetricsEndpoints).entries()) {
      if (ep.port === undefined) {
        errors.push(`${id}: podMetricsEndpoints[${i}] has no port (a container port name)`);
        continue;
      }
      for (const p of selected) {
        if (!containerPortNames(p.spec).has(ep.port)) {
          errors.push(`${id}: podMetricsEndpoints[${i}].port "${ep.port}" is not a container port name of ${objectId(p.owner)}`);
        }
      }
    }
  }

  // HPAs target an existing workload; PDBs select one.
  const hpas = byKind("HorizontalPodAutoscaler");
  for (const hpa of hpas) {
    const ref = hpa.spec?.scaleTargetRef ?? {};
    const target = objects.find((o) => o.kind === ref.kind && o.metadata?.name === ref.name && nsOf(o) === nsOf(hpa));
    if (!target) errors.push(`${objectId(hpa)}: scaleTargetRef ${ref.kind}/${ref.name} is not in the overlay`);
    else if (ref.apiVersion && ref.apiVersion !== target.apiVersion) {
      errors.push(`${objectId(hpa)}: scaleTargetRef apiVersion ${ref.apiVersion} is not ${target.apiVersion}`);
    }
    if (target && target.spec?.replicas !== undefined) {
      errors.push(
        `${objectId(hpa)}: ${objectId(target)} sets spec.replicas, so every kubectl apply resets the ` +
            `autoscaled replica count (the HPA documentation: remove spec.replicas from an autoscaled workload)`,
      );
    }
  }
  for (const pdb of byKind("PodDisruptionBudget")) {
    const id = objectId(pdb);
    const selected = inNs(pods, nsOf(pdb)).filter((p) => selectorMatches(pdb.spec?.selector, p.labels));
    if (selected.length === 0) {
      errors.push(`${id}: spec.selector ${describeSelector(pdb.spec?.selector)} selects no workload`);
      continue;
    }
    const min = pdb.spec?.minAvailable;
    if (typeof min === "number") {
      let replicas = 0;
      for (const p of selected) {
        const hpa = hpas.find((h) => h.spec?.scaleTargetRef?.kind === p.owner.kind && h.spec?.scaleTargetRef?.name === p.owner.metadata?.name);
        replicas += hpa ? (hpa.spec?.minReplicas ?? 1) : (p.owner.spec?.replicas ?? 1);
      }
      if (min >= replicas) errors.push(`${id}: minAvailable ${min} with ${replicas} replicas blocks every voluntary eviction`);
    }
  }

  // NetworkPolicies select pods; peers and named ports exist.
  for (const np of byKind("NetworkPolicy")) {
    const id = objectId(np);
    const local = inNs(pods, nsOf(np));
    const selected = local.filter((p) => selectorMatches(np.spec?.podSelector, p.labels));
    if (selected.length === 0) {
      errors.push(`${id}: spec.podSelector ${describeSelector(np.spec?.podSelector)} selects no pod template`);
    }
    for (const dir of ["ingress", "egress"]) {
      for (const [i, rule] of asArray(np.spec?.[dir]).entries()) {
        const peers = asArray(rule[dir === "ingress" ? "from" : "to"]);
        const peerPods = [];
        for (const [j, peer] of peers.entries()) {
          if (!peer.podSelector || peer.namespaceSelector) continue;
          const matched = local.filter((p) => selectorMatches(peer.podSelector, p.labels));
          if (matched.length === 0) {
            errors.push(`${id}: spec.${dir}[${i}] peer ${j} podSelector ${describeSelector(peer.podSelector)} selects no pod template`);
          }
          peerPods.push(...matched);
        }
        // Named ports refer to the pods receiving the traffic.
        const receivers = dir === "ingress" ? selected : peerPods;
        const external = dir === "egress" && peers.some((p) => !p.podSelector || p.namespaceSelector);
        for (const port of asArray(rule.ports)) {
          if (typeof port.port !== "string" || external || receivers.length === 0) continue;
          if (!receivers.some((p) => containerPortNames(p.spec).has(port.port))) {
            errors.push(`${id}: spec.${dir}[${i}] port "${port.port}" is not a container port name of the pods it applies to`);
          }
        }
      }
    }
  }

  // The PrometheusRules and dashboards.
  for (const rule of byKind("PrometheusRule")) {
    ctx.rules++;
    checkPrometheusRule(rule, ctx.root, errors, { compare: ctx.project && nameMatches(rule.metadata.name, "natsgw-rules") });
  }
  for (const cm of byKind("ConfigMap")) {
    if (cm.metadata?.labels?.[DASHBOARD_LABEL] === undefined) continue;
    ctx.dashboards++;
    if (cm.metadata.labels[DASHBOARD_LABEL] !== "1") {
      errors.push(`${objectId(cm)}: label ${DASHBOARD_LABEL} is ${JSON.stringify(cm.metadata.labels[DASHBOARD_LABEL])}, not "1"`);
    }
    checkDashboards(cm, ctx.root, errors);
  }

  checkNats(objects, ctx, errors);
  checkFileArguments(objects, errors, externalSecrets);
  checkProjectWorkloads(objects, errors);

  if (ctx.project) {
    for (const [kind, name] of REQUIRED_OBJECTS) {
      if (!objects.some((o) => o.kind === kind && (name === null || nameMatches(o.metadata?.name ?? "", name)))) {
        errors.push(`missing ${kind}${name ? `/${name}` : ""}: every overlay renders it`);
      }
    }
    const dash = objects.find((o) => o.kind === "ConfigMap" && nameMatches(o.metadata?.name ?? "", "natsgw-grafana-dashboard"));
    if (dash && dash.metadata?.labels?.[DASHBOARD_LABEL] !== "1") {
      errors.push(`${objectId(dash)}: no label ${DASHBOARD_LABEL}: "1" (the Grafana sidecar would not load it)`);
    }
    if (dash && dash.data?.["natsgw-dashboard.json"] === undefined) {
      errors.push(`${objectId(dash)}: no data key natsgw-dashboard.json`);
    }
    if (!objects.some((o) => o.kind === "ServiceMonitor" || o.kind === "PodMonitor")) {
      errors.push("missing a ServiceMonitor or PodMonitor for the services' metrics");
    }
    for (const name of PROJECT_DEPLOYMENTS) {
      const dep = objects.find((o) => o.kind === "Deployment" && o.metadata?.name === name);
      if (dep && !asArray(dep.spec?.template?.spec?.containers).some((c) => /(^|\/)natsgw[^/:@]*[:@]/.test(c.image ?? ""))) {
        errors.push(`${objectId(dep)}: no container runs the project image`);
      }
    }
    checkImageContents(objects, imageLayout(ctx.root), errors);
    checkMonitorJobs(objects, ruleJobs(ctx.root), errors);
    const natsSts = objects.find((o) => o.kind === "StatefulSet" && o.metadata?.name === "nats");
    if (natsSts && ctx.natsConfigs === 0) errors.push(`${objectId(natsSts)}: no nats.conf was found to check`);
  }
}

// ---------------------------------------------------------------------------
// One overlay, end to end.

// options: { name, dir, root, version, project, kubectl }. `project` turns
// on the checks tied to this repository's layout (REQUIRED_OBJECTS, the
// PrometheusRule equal to monitoring/'s rules).
export async function checkOverlay(options) {
  const ctx = {
    overlay: options.name,
    root: options.root,
    version: options.version,
    project: options.project ?? true,
    ourImages: 0,
    natsConfigs: 0,
    rules: 0,
    dashboards: 0,
  };
  const { objects, errors: renderErrors } = renderOverlay(options.dir, { kubectl: options.kubectl });
  const errors = [...renderErrors];
  if (objects.length === 0 && errors.length === 0) errors.push(`${options.dir} renders no objects`);
  for (const obj of objects) await checkSchema(obj, errors);
  if (objects.length > 0) checkSemantics(objects, ctx, errors);
  const kinds = {};
  for (const obj of objects) kinds[obj.kind] = (kinds[obj.kind] ?? 0) + 1;
  return { objects, errors, kinds, ctx };
}

export function summary(name, result) {
  const kinds = Object.entries(result.kinds)
    .sort(([a], [b]) => a.localeCompare(b))
    .map(([k, n]) => `${k} ${n}`)
    .join(", ");
  const { ctx } = result;
  return (
    `overlay ${name}: ${result.objects.length} objects (${kinds || "none"}); ` +
    `${ctx.natsConfigs} nats.conf checked with nats-server -t, ${ctx.rules} PrometheusRule checked with promtool, ` +
    `${ctx.dashboards} dashboard ConfigMap, ${ctx.ourImages} project image containers; ` +
    `${result.errors.length} failure${result.errors.length === 1 ? "" : "s"}`
  );
}
