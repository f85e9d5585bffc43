#!/usr/bin/env node
// Proves that the checks of manifest_checks.mjs can fail: small inline
// objects with one defect each, and the fixture overlays in fixtures/ (good:
// no failure at all; bad: exactly the failures listed below, each named).
//
//   node self_test.mjs --root <repository>

import path from "node:path";
import { fileURLToPath } from "node:url";
import fs from "node:fs";
import {
  checkDashboards,
  checkImageContents,
  checkMonitorJobs,
  checkOverlay,
  checkProjectWorkloads,
  checkPrometheusRule,
  checkSchema,
  checkSemantics,
  expectedRuleGroups,
  imageLayout,
  kustomizeVersionProblem,
  parseNatsConf,
  parseQuantity,
  pathArguments,
  projectVersion,
  renderOverlay,
  ruleJobs,
} from "./manifest_checks.mjs";

const here = path.dirname(fileURLToPath(import.meta.url));
const args = process.argv.slice(2);
if (args.length !== 2 || args[0] !== "--root") {
  console.error("usage: node self_test.mjs --root <repository>");
  process.exit(2);
}
const root = path.resolve(args[1]);
const FIXTURE_VERSION = "0.0.0-fixture";

const cases = [];
const test = (name, fn) => cases.push({ name, fn });

function assert(condition, message) {
  if (!condition) throw new Error(message);
}

// Every pattern matches an error and every error matches a pattern.
function expectExactly(errors, patterns) {
  const problems = [];
  for (const p of patterns) if (!errors.some((e) => p.test(e))) problems.push(`no failure matches ${p}`);
  for (const e of errors) if (!patterns.some((p) => p.test(e))) problems.push(`unexpected failure: ${e}`);
  if (problems.length > 0) throw new Error(`${problems.join("\n    ")}\n  failures were:\n    ${errors.join("\n    ")}`);
}

async function schemaErrors(obj) {
  const errors = [];
  await checkSchema(obj, errors);
  return errors;
}

function deployment() {
  return {
    apiVersion: "apps/v1",
    kind: "Deployment",
    metadata: { name: "demo", labels: { "app.kubernetes.io/name": "demo", free: "form" }, annotations: { "a/b": "c" } },
    spec: {
      replicas: 2,
      selector: { matchLabels: { "app.kubernetes.io/name": "demo" } },
      template: {
        metadata: { labels: { "app.kubernetes.io/name": "demo" } },
        spec: {
          containers: [
            {
              name: "demo",
              image: "natsgw/natsgw-examples:1.2.3",
              ports: [{ name: "metrics", containerPort: 9090 }],
              readinessProbe: { httpGet: { path: "/readyz", port: "metrics" } },
              resources: { requests: { cpu: "100m", memory: "64Mi" }, limits: { cpu: "1", memory: "64Mi" } },
              env: [{ name: "POD", valueFrom: { fieldRef: { fieldPath: "metadata.name" } } }],
              securityContext: { runAsNonRoot: true, readOnlyRootFilesystem: true, allowPrivilegeEscalation: false },
            },
          ],
          nodeSelector: { "kubernetes.io/os": "linux" },
          volumes: [{ name: "spool", emptyDir: {} }],
        },
      },
    },
  };
}

function serviceMonitor() {
  return {
    apiVersion: "monitoring.coreos.com/v1",
    kind: "ServiceMonitor",
    metadata: { name: "demo" },
    spec: { selector: { matchLabels: { app: "demo" } }, endpoints: [{ port: "metrics", interval: "15s" }] },
  };
}

function prometheusRule(groups) {
  return {
    apiVersion: "monitoring.coreos.com/v1",
    kind: "PrometheusRule",
    metadata: { name: "natsgw-rules" },
    spec: { groups },
  };
}

// --- schema and strict unknown-field check ---------------------------------

test("a valid Deployment passes the schema and the strict check", async () => {
  expectExactly(await schemaErrors(deployment()), []);
});

test("strict check: containers[0].bogusField", async () => {
  const d = deployment();
  d.spec.template.spec.containers[0].bogusField = true;
  expectExactly(await schemaErrors(d), [/^Deployment\/demo: unknown field "bogusField" at spec\.template\.spec\.containers\[0\]$/]);
});

test("strict check: a misspelled readinesProbe", async () => {
  const d = deployment();
  const c = d.spec.template.spec.containers[0];
  c.readinesProbe = c.readinessProbe;
  delete c.readinessProbe;
  expectExactly(await schemaErrors(d), [/^Deployment\/demo: unknown field "readinesProbe" at spec\.template\.spec\.containers\[0\]$/]);
});

test("strict check: nested and top-level keys", async () => {
  const d = deployment();
  d.spec.template.spec.containers[0].readinessProbe.httpGet.prot = 80;
  d.metadata.lables = {};
  d.spec.template.spec.volumes[0].emptyDir.medum = "Memory";
  expectExactly(await schemaErrors(d), [
    /^Deployment\/demo: unknown field "prot" at spec\.template\.spec\.containers\[0\]\.readinessProbe\.httpGet$/,
    /^Deployment\/demo: unknown field "lables" at metadata$/,
    /^Deployment\/demo: unknown field "medum" at spec\.template\.spec\.volumes\[0\]\.emptyDir$/,
  ]);
});

test("strict check: prometheus-operator kinds", async () => {
  const sm = serviceMonitor();
  sm.spec.endpoints[0].intervall = "15s";
  expectExactly(await schemaErrors(sm), [/^ServiceMonitor\/demo: unknown field "intervall" at spec\.endpoints\[0\]$/]);
  const rule = prometheusRule([{ name: "g", rules: [{ record: "a:b:c", expresion: "up" }] }]);
  const errors = await schemaErrors(rule);
  assert(
    errors.some((e) => e === 'PrometheusRule/natsgw-rules: unknown field "expresion" at spec.groups[0].rules[0]'),
    `expresion not reported: ${errors.join("; ")}`,
  );
});

test("schema: type and format errors", async () => {
  const d = deployment();
  d.spec.replicas = "2";
  expectExactly(await schemaErrors(d), [/^Deployment\/demo: schema: .*spec\/replicas must be integer/]);
  const sm = serviceMonitor();
  sm.spec.endpoints[0].interval = "15 seconds";
  expectExactly(await schemaErrors(sm), [/^ServiceMonitor\/demo: schema: .*interval must match pattern/]);
});

test("an unknown kind fails", async () => {
  expectExactly(await schemaErrors({ apiVersion: "example.com/v1", kind: "Widget", metadata: { name: "w" } }), [
    /^Widget\/w: unknown kind example\.com\/v1\/Widget/,
  ]);
  expectExactly(await schemaErrors({ apiVersion: "v1", kind: "Container", metadata: { name: "c" } }), [
    /^Container\/c: unknown kind v1\/Container/,
  ]);
});

// --- semantic checks not covered by the fixture overlays --------------------

test("an autoscaled Deployment must not set spec.replicas", () => {
  const d = deployment();
  d.metadata.namespace = "n";
  const hpa = {
    apiVersion: "autoscaling/v2",
    kind: "HorizontalPodAutoscaler",
    metadata: { name: "demo", namespace: "n" },
    spec: { scaleTargetRef: { apiVersion: "apps/v1", kind: "Deployment", name: "demo" }, maxReplicas: 3 },
  };
  const ctx = () => ({ overlay: "t", root, version: "1.2.3", project: false, ourImages: 0, natsConfigs: 0, rules: 0, dashboards: 0 });
  const replicaErrors = (objects) => {
    const errors = [];
    checkSemantics(objects, ctx(), errors);
    return errors.filter((e) => e.includes("spec.replicas"));
  };
  expectExactly(replicaErrors([d, hpa]), [/^HorizontalPodAutoscaler\/demo: Deployment\/demo sets spec\.replicas/]);
  delete d.spec.replicas;
  expectExactly(replicaErrors([d, hpa]), []);
});

test("Secret nats-auth: required in dev, left to the operator in prod", () => {
  const d = deployment();
  d.metadata.namespace = "n";
  d.spec.template.spec.containers[0].env.push({
    name: "NATS_PASSWORD",
    valueFrom: { secretKeyRef: { name: "nats-auth", key: "password" } },
  });
  const secret = { apiVersion: "v1", kind: "Secret", metadata: { name: "nats-auth", namespace: "n" }, data: { user: "dQ==" } };
  const secretErrors = (overlay, objects) => {
    const errors = [];
    const ctx = { overlay, root, version: "1.2.3", project: false, ourImages: 0, natsConfigs: 0, rules: 0, dashboards: 0 };
    checkSemantics(objects, ctx, errors);
    return errors.filter((e) => e.includes("nats-auth") && !e.includes(": no label") && !e.includes(": label "));
  };
  expectExactly(secretErrors("dev", [d]), [/^Deployment\/demo: container demo: env NATS_PASSWORD: references Secret\/nats-auth, which the overlay does not render$/]);
  expectExactly(secretErrors("dev", [d, secret]), [/^Deployment\/demo: container demo: env NATS_PASSWORD: Secret\/nats-auth has no key "password"$/]);
  expectExactly(secretErrors("prod", [d]), []);
  expectExactly(secretErrors("prod", [d, secret]), [/^Secret\/nats-auth is rendered, but the prod overlay must leave it to the operator/]);
});

test("project overlays must render the project's objects", () => {
  const errors = [];
  const ctx = { overlay: "t", root, version: "1.2.3", project: true, ourImages: 0, natsConfigs: 0, rules: 0, dashboards: 0 };
  checkSemantics([deployment()], ctx, errors);
  for (const want of [
    "StatefulSet/nats",
    "Deployment/user-service",
    "Deployment/natsgw-edge",
    "Service/natsgw-edge",
    "PrometheusRule/natsgw-rules",
    "ConfigMap/natsgw-grafana-dashboard",
  ]) {
    assert(errors.includes(`missing ${want}: every overlay renders it`), `no failure for a missing ${want}`);
  }
});

test("quantities and the NATS configuration parser", () => {
  assert(parseQuantity("100m") === 0.1 && parseQuantity("64Mi") === 64 * 2 ** 20 && parseQuantity("1e3") === 1000, "parseQuantity");
  assert(parseQuantity("2") === 2 && Number.isNaN(parseQuantity("2 cores")), "parseQuantity rejects junk");
  const conf = parseNatsConf(
    "# $COMMENTED\nserver_name: $SERVER_NAME\njetstream { store_dir: /data }\n" +
      "cluster {\n  port: 6222 # routes: [x]\n  routes: [\n    nats://a-0.h:6222, \"nats://a-1.h:6222\"\n  ]\n}\n",
  );
  assert(conf.cluster && conf.jetstream && conf.clusterPort === 6222, JSON.stringify(conf));
  assert(conf.routes.length === 2 && conf.routes[1] === "nats://a-1.h:6222", JSON.stringify(conf.routes));
  assert(conf.variables.length === 1 && conf.variables[0] === "SERVER_NAME", JSON.stringify(conf.variables));
  const single = parseNatsConf("port: 4222\n");
  assert(!single.cluster && !single.jetstream && single.routes.length === 0, JSON.stringify(single));
});

test("the project version comes from CMakeLists.txt", () => {
  assert(/^\d+\.\d+\.\d+$/.test(projectVersion(root)), projectVersion(root));
});

// --- the project's workloads, its image and its Prometheus job -------------

// deployment() in namespace n, with its Service (metrics port) and the
// objects every project workload needs, each removable by name.
function projectObjects() {
  const d = deployment();
  d.metadata.namespace = "n";
  const c = d.spec.template.spec.containers[0];
  c.livenessProbe = { httpGet: { path: "/healthz", port: "metrics" } };
  c.lifecycle = { preStop: { httpGet: { path: "/drainz", port: "metrics" } } };
  const labels = { "app.kubernetes.io/name": "demo", "app.kubernetes.io/part-of": "natsgw" };
  return {
    deployment: d,
    service: {
      apiVersion: "v1",
      kind: "Service",
      metadata: { name: "demo", namespace: "n", labels },
      spec: { selector: { "app.kubernetes.io/name": "demo" }, ports: [{ name: "metrics", port: 9090, targetPort: 9090 }] },
    },
    serviceMonitor: {
      apiVersion: "monitoring.coreos.com/v1",
      kind: "ServiceMonitor",
      metadata: { name: "demo", namespace: "n" },
      spec: {
        jobLabel: "app.kubernetes.io/part-of",
        selector: { matchLabels: { "app.kubernetes.io/name": "demo" } },
        endpoints: [{ port: "metrics" }],
      },
    },
    networkPolicy: {
      apiVersion: "networking.k8s.io/v1",
      kind: "NetworkPolicy",
      metadata: { name: "demo", namespace: "n" },
      spec: { podSelector: { matchLabels: { "app.kubernetes.io/name": "demo" } }, policyTypes: ["Ingress", "Egress"] },
    },
    pdb: {
      apiVersion: "policy/v1",
      kind: "PodDisruptionBudget",
      metadata: { name: "demo", namespace: "n" },
      spec: { minAvailable: 1, selector: { matchLabels: { "app.kubernetes.io/name": "demo" } } },
    },
  };
}

function workloadErrors(objects) {
  const errors = [];
  checkProjectWorkloads(Object.values(objects), errors);
  return errors;
}

test("project workloads: probes, drain hook, scrape, NetworkPolicy, PDB", () => {
  expectExactly(workloadErrors(projectObjects()), []);
  const bare = projectObjects();
  delete bare.deployment.spec.template.spec.containers[0].livenessProbe;
  delete bare.deployment.spec.template.spec.containers[0].lifecycle;
  expectExactly(workloadErrors({ deployment: bare.deployment }), [
    /^Deployment\/demo: container demo: no livenessProbe \(\/healthz\)$/,
    /^Deployment\/demo: container demo: no lifecycle\.preStop hook \(\/drainz\)$/,
    /^Deployment\/demo: container demo: port metrics is scraped by no ServiceMonitor or PodMonitor$/,
    /^Deployment\/demo: no NetworkPolicy restricts its pods' ingress and egress$/,
    /^Deployment\/demo: no PodDisruptionBudget selects its pods$/,
  ]);
  // Only ingress restricted; the Service sends to another port.
  const partial = projectObjects();
  partial.networkPolicy.spec.policyTypes = ["Ingress"];
  partial.service.spec.ports[0].targetPort = 8080;
  expectExactly(workloadErrors(partial), [
    /^Deployment\/demo: container demo: port metrics is scraped by no ServiceMonitor or PodMonitor$/,
    /^Deployment\/demo: no NetworkPolicy restricts its pods' egress$/,
  ]);
  // A PodMonitor on the metrics port scrapes it as well.
  const viaPod = projectObjects();
  delete viaPod.serviceMonitor;
  viaPod.podMonitor = {
    apiVersion: "monitoring.coreos.com/v1",
    kind: "PodMonitor",
    metadata: { name: "demo", namespace: "n" },
    spec: { selector: { matchLabels: { "app.kubernetes.io/name": "demo" } }, podMetricsEndpoints: [{ port: "metrics" }] },
  };
  expectExactly(workloadErrors(viaPod), []);
  // A container port without the name metrics.
  const unnamed = projectObjects();
  unnamed.deployment.spec.template.spec.containers[0].ports[0].name = "prom";
  unnamed.deployment.spec.template.spec.containers[0].readinessProbe.httpGet.port = "prom";
  expectExactly(workloadErrors(unnamed), [/^Deployment\/demo: container demo: no container port named metrics \(--metrics_port\)$/]);
  // Other images are not the project's business.
  const other = projectObjects().deployment;
  other.spec.template.spec.containers[0].image = "nats:2.9.10-alpine";
  expectExactly(workloadErrors({ other }), []);
});

test("command-line paths", () => {
  const found = pathArguments({
    command: ["/bin/x", "--schema=/a/b,/c/d/", "-c", "/etc/x.conf", "--url=http://h/p", "--n=3"],
    args: ["--f=relative", "--g=/g"],
  });
  const want = [
    ["--schema=/a/b,/c/d/", "/a/b"],
    ["--schema=/a/b,/c/d/", "/c/d"],
    ["/etc/x.conf", "/etc/x.conf"],
    ["--g=/g", "/g"],
  ];
  assert(JSON.stringify(found.map((f) => [f.arg, f.path])) === JSON.stringify(want), JSON.stringify(found));
});

const FIXTURE_DOCKERFILE = [
  "FROM debian:bookworm AS build",
  "COPY . .",
  "RUN install -d /out && cp build/bin/tool /out/",
  "FROM debian:bookworm-slim AS runtime",
  "# COPY --from=build /out/commented /usr/local/bin/",
  "RUN install -d -m 0750 -o 65532 \\",
  "      -g 65532 /var/spool/demo && true",
  "COPY --from=build /out/user-service \\",
  "     /out/natsgw-edge /usr/local/bin/",
  "COPY schemas/*.fbs /usr/share/natsgw/schemas/",
  'VOLUME ["/data"]',
].join("\n");

test("the image layout, from a Dockerfile", () => {
  const layout = imageLayout(root, FIXTURE_DOCKERFILE);
  for (const f of ["/usr/local/bin/user-service", "/usr/local/bin/natsgw-edge", "/usr/share/natsgw/schemas/users.fbs"]) {
    assert(layout.files.has(f), `${f} missing from ${[...layout.files].join(", ")}`);
  }
  for (const d of ["/usr/share/natsgw/schemas", "/usr/share/natsgw", "/var/spool/demo", "/data", "/usr/local/bin"]) {
    assert(layout.dirs.has(d), `${d} missing from ${[...layout.dirs].join(", ")}`);
  }
  for (const f of ["/out/user-service", "/usr/local/bin/commented", "/usr/local/bin/tool"]) {
    assert(!layout.files.has(f), `${f} is not in the runtime stage`);
  }
  // The repository's own Dockerfile ships what k8s/ runs.
  const real = imageLayout(root);
  for (const f of ["/usr/local/bin/user-service", "/usr/local/bin/email-service", "/usr/local/bin/natsgw-edge", "/usr/local/bin/natsgw"]) {
    assert(real.files.has(f), `the Dockerfile does not ship ${f}`);
  }
  assert(real.dirs.has("/usr/share/natsgw/schemas"), "the Dockerfile does not ship the schemas");
});

test("project containers run what the image holds", () => {
  const layout = imageLayout(root, FIXTURE_DOCKERFILE);
  const edge = (command, args) => {
    const d = deployment();
    d.metadata.name = "natsgw-edge";
    const c = d.spec.template.spec.containers[0];
    c.name = "natsgw-edge";
    if (command !== undefined) c.command = command;
    c.args = args;
    c.volumeMounts = [{ name: "tokens", mountPath: "/etc/natsgw-edge", readOnly: true }];
    const errors = [];
    checkImageContents([d], layout, errors);
    return errors;
  };
  const ok = ["--schema=/usr/share/natsgw/schemas,/usr/share/natsgw/schemas/users.fbs", "--bearer_tokens_file=/etc/natsgw-edge/tokens"];
  expectExactly(edge(["/usr/local/bin/natsgw-edge"], ok), []);
  expectExactly(edge(["/usr/local/bin/natsgw-edg"], ["--schema=/usr/share/natsgw/schema", "--mail_dir=/var/spool/demo"]), [
    /^Deployment\/natsgw-edge: container natsgw-edge: runs \/usr\/local\/bin\/natsgw-edg, which the image \(Dockerfile\) does not contain$/,
    /^Deployment\/natsgw-edge: container natsgw-edge: --schema=\/usr\/share\/natsgw\/schema names \/usr\/share\/natsgw\/schema, which is neither in the image \(Dockerfile\) nor in a volume$/,
  ]);
  expectExactly(edge(undefined, ok), [/^Deployment\/natsgw-edge: container natsgw-edge: no command/]);
});

test("Prometheus scrapes the project's pods as the rules' job", () => {
  const jobs = ruleJobs(root);
  assert(jobs.has("natsgw") && jobs.size === 1, `the rules select job ${[...jobs].join(", ")}`);
  const jobErrors = (objects) => {
    const errors = [];
    checkMonitorJobs(Object.values(objects), jobs, errors);
    return errors;
  };
  expectExactly(jobErrors(projectObjects()), []);
  const byName = projectObjects();
  delete byName.serviceMonitor.spec.jobLabel;
  byName.podMonitor = {
    apiVersion: "monitoring.coreos.com/v1",
    kind: "PodMonitor",
    metadata: { name: "demo-pods", namespace: "n" },
    spec: { selector: { matchLabels: { "app.kubernetes.io/name": "demo" } }, podMetricsEndpoints: [{ port: "metrics" }] },
  };
  expectExactly(jobErrors(byName), [
    /^ServiceMonitor\/demo: scrapes Service\/demo as job "demo", but the rules of monitoring\/ select job="natsgw"$/,
    /^PodMonitor\/demo-pods: scrapes the pods of Deployment\/demo as job "n\/demo-pods", but the rules of monitoring\/ select job="natsgw"$/,
  ]);
});

// --- PrometheusRule and dashboard against monitoring/ -----------------------

test("PrometheusRule equal to monitoring/'s rules passes, promtool included", () => {
  const errors = [];
  checkPrometheusRule(prometheusRule(expectedRuleGroups(root)), root, errors);
  expectExactly(errors, []);
});

test("PrometheusRule missing a rule fails and prints the expected spec", () => {
  const groups = structuredClone(expectedRuleGroups(root));
  const last = groups[groups.length - 1];
  const dropped = last.rules.pop();
  const errors = [];
  checkPrometheusRule(prometheusRule(groups), root, errors);
  expectExactly(errors, [/^PrometheusRule\/natsgw-rules: spec\.groups differ from monitoring\/prometheus\/rules/]);
  const name = dropped.alert ?? dropped.record;
  assert(errors[0].includes("the expected spec:\nspec:\n  groups:") && errors[0].includes(name), "the expected YAML is not printed");
});

test("PrometheusRule with an invalid expression fails promtool", () => {
  const errors = [];
  checkPrometheusRule(prometheusRule([{ name: "g", rules: [{ record: "a:b:c", expr: "sum(" }] }]), root, errors, {
    compare: false,
  });
  expectExactly(errors, [/^PrometheusRule\/natsgw-rules: promtool check rules rejects its spec/]);
});

test("dashboard ConfigMap byte for byte", () => {
  const file = path.join(root, "monitoring", "grafana", "natsgw-dashboard.json");
  const text = fs.readFileSync(file, "utf8");
  const cm = (data) => ({ apiVersion: "v1", kind: "ConfigMap", metadata: { name: "d" }, data });
  let errors = [];
  checkDashboards(cm({ "natsgw-dashboard.json": text }), root, errors);
  expectExactly(errors, []);
  errors = [];
  checkDashboards(cm({ "natsgw-dashboard.json": text.trimEnd() + " \n", "other.json": "{}" }), root, errors);
  expectExactly(errors, [
    /^ConfigMap\/d: data key natsgw-dashboard\.json differs from monitoring\/grafana\/natsgw-dashboard\.json/,
    /^ConfigMap\/d: data key other\.json is not a dashboard of monitoring\/grafana\//,
  ]);
});

// --- rendering and the fixture overlays -------------------------------------

test("a missing kubectl is named", () => {
  const { errors } = renderOverlay(path.join(here, "fixtures", "good"), { kubectl: path.join(here, "no-such-kubectl") });
  expectExactly(errors, [/not found: install the package `kubectl`/]);
});

test("a kubectl bundling a kustomize older than v5 is refused", () => {
  assert(kustomizeVersionProblem("kubectl", { kustomizeVersion: "v5.5.0" }) === null, "v5.5.0 refused");
  for (const info of [{ clientVersion: { gitVersion: "v1.20.2" } }, { kustomizeVersion: "v4.5.7" }, {}]) {
    const problem = kustomizeVersionProblem("kubectl", info);
    assert(problem !== null && problem.includes("the package `kubectl`"), `${JSON.stringify(info)} accepted`);
  }
});

// Checks the overlay tests/k8s/fixtures/<name> as a non-project overlay.
function checkFixture(name) {
  return checkOverlay({
    name: `fixture-${name}`,
    dir: path.join(here, "fixtures", name),
    root,
    version: FIXTURE_VERSION,
    project: false,
  });
}

test("fixture overlay good: no failure", async () => {
  const result = await checkFixture("good");
  expectExactly(result.errors, []);
  assert(result.objects.length >= 10 && result.ctx.natsConfigs === 1 && result.ctx.rules === 1, "good fixture not fully checked");
});

test("fixture overlay bad: every defect named", async () => {
  const result = await checkFixture("bad");
  expectExactly(result.errors, [
    /printed a warning: .*'commonLabels' is deprecated/,
    /^Deployment\/echo: schema: .*spec\/minReadySeconds must be integer/,
    /^Deployment\/echo: unknown field "bogusField" at spec\.template\.spec\.containers\[0\]$/,
    /^Deployment\/echo: unknown field "readinesProbe" at spec\.template\.spec\.containers\[0\]$/,
    /^ServiceMonitor\/echo: schema: .*endpoints\/0\/interval must match pattern/,
    /^PodDisruptionBudget\/echo: spec\.selector uses app\.kubernetes\.io\/version$/,
    /^Deployment\/echo: container echo: livenessProbe\.httpGet\.port "healthport" is not a port name of the container$/,
    /^Deployment\/echo: container echo: securityContext\.readOnlyRootFilesystem is not true$/,
    /^Deployment\/echo: container echo: no resources\.limits\.cpu$/,
    /^Deployment\/echo: container echo: no resources\.limits\.memory$/,
    /^Deployment\/echo: container echo: image natsgw\/natsgw-examples:0\.0\.1 is not tagged with the project version 0\.0\.0-fixture$/,
    /^Deployment\/echo: container echo: env MISSING: references ConfigMap\/missing-config, which the overlay does not render$/,
    /^Service\/echo: port metrics targetPort "metricz" is not a container port name of Deployment\/echo$/,
    /^Service\/nats-headless: the headless NATS Service needs publishNotReadyAddresses: true$/,
    /^ServiceMonitor\/echo: endpoints\[0\]\.port "web" is not a port name of Service\/echo$/,
    /^HorizontalPodAutoscaler\/echo: scaleTargetRef Deployment\/no-such-deployment is not in the overlay$/,
    /^PodDisruptionBudget\/echo: minAvailable 1 with 1 replicas blocks every voluntary eviction$/,
    /^NetworkPolicy\/echo: spec\.podSelector .* selects no pod template$/,
    /^NetworkPolicy\/echo: spec\.egress\[0\] port "natz" is not a container port name of the pods it applies to$/,
    /^PodMonitor\/echo: podMetricsEndpoints\[0\]\.port "metrix" is not a container port name of Deployment\/echo$/,
    /^Deployment\/echo: spec\.selector .*"tier":"web".* does not match the pod template labels/,
    /^StatefulSet\/nats: \/etc\/nats-config\/nats\.conf lists 2 cluster routes for 3 replicas/,
    /^StatefulSet\/nats: cluster route nats:\/\/nats-5\.nats-headless:6222 is not <nats-N>\.nats-headless/,
    /^StatefulSet\/nats: nats-server -t rejects .*unknown field "no_such_option"/,
    /^Deployment\/echo: container echo: --password_file=\/etc\/echo\/passwd: volume auth \(Secret\/echo-auth-[a-z0-9]{10}\) mounted at \/etc\/echo has no file passwd \(its items: password\)$/,
    /^Deployment\/echo: container echo: --config_file=\/etc\/echo-config\/NATS_URI: ConfigMap\/echo-config-[a-z0-9]{10} mounted at \/etc\/echo-config\/ has no key NATS_URI \(keys: NATS_URL\)$/,
    /^Deployment\/echo: container echo: port metrics is scraped by no ServiceMonitor or PodMonitor$/,
    /^Deployment\/echo: no NetworkPolicy restricts its pods' ingress and egress$/,
  ]);
});

let failed = 0;
for (const { name, fn } of cases) {
  try {
    await fn();
    console.log(`ok - ${name}`);
  } catch (err) {
    failed++;
    console.log(`FAIL - ${name}\n  ${err.message}`);
  }
}
console.log(`${cases.length - failed}/${cases.length} self-test cases passed`);
process.exit(failed === 0 ? 0 : 1);
