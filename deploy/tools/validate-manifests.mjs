#!/usr/bin/env node
// Validates rendered Kubernetes manifests offline, without a cluster:
//
//   kubectl kustomize deploy/k8s/overlays/gpu | node deploy/tools/validate-manifests.mjs - \
//       [--external Secret/tecl-auth ...]
//
// For every object of the multi-document YAML input:
//   1. schema: the object is loaded into its kubernetes-models class (the Kubernetes OpenAPI
//      schemas; ServiceMonitor and PrometheusRule from @kubernetes-models/prometheus-operator;
//      cert-manager's Certificate and Issuer from @kubernetes-models/cert-manager) and validate()
//      is called (types, required fields, formats, enums);
//   2. unknown fields: every field must exist in the type declarations of that class (the schemas
//      allow unknown fields, so a misspelt `readinesProbe` would otherwise pass and be dropped);
//   3. references: ConfigMaps, Secrets and PersistentVolumeClaims that pods use, Services'
//      selectors and named target ports, probe ports, ServiceMonitor ports, StatefulSet
//      serviceName, HPA and PDB targets, NetworkPolicy pod selectors, cert-manager issuerRefs
//      and CA Secrets must resolve inside the rendered set (`--external Kind/name` names objects
//      that are created outside it). A cert-manager Certificate provides the Secret named by its
//      spec.secretName.
// Prints one line per object and every problem; exits 1 when there is any problem, 2 on usage
// errors.
import fs from "node:fs";
import path from "node:path";
import { createRequire } from "node:module";
import yaml from "js-yaml";

const require = createRequire(import.meta.url);

// ---------------------------------------------------------------------------------------------
// Which class validates which apiVersion/kind.

function modelModule(apiVersion, kind) {
  if (apiVersion === "monitoring.coreos.com/v1") {
    return `@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1/${kind}`;
  }
  if (apiVersion === "cert-manager.io/v1") {
    return `@kubernetes-models/cert-manager/cert-manager.io/v1/${kind}`;
  }
  if (apiVersion === "v1") return `kubernetes-models/v1/${kind}`;
  return `kubernetes-models/${apiVersion}/${kind}`;
}

// ---------------------------------------------------------------------------------------------
// Unknown-field check from the classes' TypeScript declarations (.d.ts): a small parser for the
// subset those files use (interfaces, object literal types, index signatures, Array<T>, unions,
// imported and aliased names).

function tokenize(text) {
  const source = text.replace(/\/\*[\s\S]*?\*\//g, " ").replace(/\/\/[^\n]*/g, " ");
  const tokens = [];
  const re = /\s*("(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'|[A-Za-z_$][\w$]*|-?\d+(?:\.\d+)?|=>|[{}\[\]<>:;?|,()=&.])/gy;
  let match;
  while ((match = re.exec(source)) !== null) tokens.push(match[1]);
  return tokens;
}

class TypeParser {
  constructor(tokens) {
    this.tokens = tokens;
    this.pos = 0;
  }
  peek(offset = 0) {
    return this.tokens[this.pos + offset];
  }
  next() {
    return this.tokens[this.pos++];
  }
  expect(token) {
    const got = this.next();
    if (got !== token) throw new Error(`expected '${token}', got '${got}'`);
  }
  parseType() {
    if (this.peek() === "|") this.next();
    const members = [this.parsePostfix()];
    while (this.peek() === "|" || this.peek() === "&") {
      this.next();
      members.push(this.parsePostfix());
    }
    return members.length === 1 ? members[0] : { union: members };
  }
  parsePostfix() {
    let type = this.parsePrimary();
    while (this.peek() === "[" && this.peek(1) === "]") {
      this.pos += 2;
      type = { array: type };
    }
    return type;
  }
  parsePrimary() {
    const token = this.next();
    if (token === "{") return this.parseObjectBody();
    if (token === "(") {
      const inner = this.parseType();
      this.expect(")");
      return inner;
    }
    if (token === "Array" && this.peek() === "<") {
      this.next();
      const element = this.parseType();
      this.expect(">");
      return { array: element };
    }
    if (token === "Record" && this.peek() === "<") {
      this.next();
      this.parseType();
      this.expect(",");
      const value = this.parseType();
      this.expect(">");
      return { object: {}, index: value };
    }
    if (/^["'\d-]/.test(token)) return { primitive: "literal" };
    if (/^[A-Za-z_$]/.test(token)) {
      if (this.peek() === "<") this.skipGeneric();
      const primitives = ["string", "number", "boolean", "any", "unknown", "null", "undefined", "object", "never"];
      return primitives.includes(token) ? { primitive: token } : { ref: token };
    }
    throw new Error(`unexpected token '${token}'`);
  }
  skipGeneric() {
    let depth = 0;
    do {
      const token = this.next();
      if (token === "<") depth++;
      if (token === ">") depth--;
    } while (depth > 0 && this.pos < this.tokens.length);
  }
  // After '{': properties and index signatures up to the matching '}'.
  parseObjectBody() {
    const object = {};
    let index = null;
    while (this.peek() !== "}") {
      if (this.peek() === "[") {
        this.next();
        this.next();  // key name
        this.expect(":");
        this.parseType();
        this.expect("]");
        this.expect(":");
        index = this.parseType();
      } else {
        if (this.peek() === "readonly") this.next();
        let name = this.next();
        if (/^["']/.test(name)) name = name.slice(1, -1);
        if (this.peek() === "?") this.next();
        if (this.peek() === "(") {  // method signature: skip to ';'
          while (this.peek() !== ";" && this.peek() !== "}") this.next();
        } else {
          this.expect(":");
          object[name] = this.parseType();
        }
      }
      if (this.peek() === ";" || this.peek() === ",") this.next();
    }
    this.expect("}");
    return { object, index };
  }
}

const declarationFiles = new Map();  // path -> { names: Map(name -> type), imports: Map(name -> module path) }

function loadDeclarations(file) {
  if (declarationFiles.has(file)) return declarationFiles.get(file);
  const entry = { names: new Map(), imports: new Map(), aliases: new Map(), file };
  declarationFiles.set(file, entry);
  const tokens = tokenize(fs.readFileSync(file, "utf8"));
  for (let i = 0; i < tokens.length; i++) {
    if (tokens[i] === "import" && tokens[i + 1] === "{") {
      let j = i + 2;
      const imported = [];
      while (tokens[j] !== "}") {
        if (tokens[j + 1] === "as") {
          imported.push([tokens[j], tokens[j + 2]]);
          j += 3;
        } else {
          imported.push([tokens[j], tokens[j]]);
          j += 1;
        }
        if (tokens[j] === ",") j++;
      }
      const spec = tokens[j + 2].slice(1, -1);
      const resolved = resolveDeclarationModule(spec, path.dirname(file));
      for (const [original, local] of imported) entry.imports.set(local, { file: resolved, name: original });
      i = j + 2;
    } else if (tokens[i] === "export" && tokens[i + 1] === "{") {
      let j = i + 2;
      while (tokens[j] !== "}") {
        if (tokens[j + 1] === "as") {
          entry.aliases.set(tokens[j + 2], tokens[j]);
          j += 3;
        } else {
          j += 1;
        }
        if (tokens[j] === ",") j++;
      }
      i = j;
    } else if (tokens[i] === "interface") {
      const name = tokens[i + 1];
      let j = i + 2;
      while (tokens[j] !== "{") j++;  // skips `extends X<...>`
      const parser = new TypeParser(tokens);
      parser.pos = j + 1;
      entry.names.set(name, parser.parseObjectBody());
      i = parser.pos - 1;
    } else if (tokens[i] === "type" && tokens[i + 2] === "=" && (tokens[i - 1] === "export" || tokens[i - 1] === "declare" || tokens[i - 1] === ";" || tokens[i - 1] === "}")) {
      const name = tokens[i + 1];
      const parser = new TypeParser(tokens);
      parser.pos = i + 3;
      entry.names.set(name, parser.parseType());
      i = parser.pos - 1;
    }
  }
  return entry;
}

function resolveDeclarationModule(spec, fromDir) {
  const base = spec.startsWith(".") ? path.resolve(fromDir, spec) : require.resolve(spec).replace(/\.(m?js)$/, "");
  for (const candidate of [`${base}.d.ts`, path.join(base, "index.d.ts"), base.replace(/\.(m?js)$/, "") + ".d.ts"]) {
    if (fs.existsSync(candidate)) return candidate;
  }
  return null;
}

// The type named `name` as seen from declaration file `file` (null when it cannot be resolved:
// the check is then lenient below that point).
function resolveRef(name, file, depth = 0) {
  if (file === null || depth > 8) return null;
  const entry = loadDeclarations(file);
  if (entry.names.has(name)) return { type: entry.names.get(name), file };
  if (entry.aliases.has(name)) return resolveRef(entry.aliases.get(name), file, depth + 1);
  if (entry.imports.has(name)) {
    const target = entry.imports.get(name);
    return resolveRef(target.name, target.file, depth + 1);
  }
  return null;
}

function isPlainObject(value) {
  return value !== null && typeof value === "object" && !Array.isArray(value);
}

function checkFields(value, type, file, where, problems) {
  if (type === null || type === undefined) return;
  if (type.ref) {
    const resolved = resolveRef(type.ref, file);
    if (resolved !== null) checkFields(value, resolved.type, resolved.file, where, problems);
    return;
  }
  if (type.array) {
    if (Array.isArray(value)) value.forEach((item, i) => checkFields(item, type.array, file, `${where}[${i}]`, problems));
    return;
  }
  if (type.union) {
    // Only a value that can match exactly one object-like member is checked.
    const objectLike = type.union.filter((m) => m.object !== undefined || m.ref);
    const resolved = objectLike.map((m) => (m.ref ? resolveRef(m.ref, file) : { type: m, file }))
      .filter((r) => r !== null && r.type.object !== undefined);
    if (isPlainObject(value) && resolved.length === 1) {
      checkFields(value, resolved[0].type, resolved[0].file, where, problems);
    }
    return;
  }
  if (type.object !== undefined) {
    if (!isPlainObject(value)) return;
    for (const [key, child] of Object.entries(value)) {
      const where_key = where === "" ? key : `${where}.${key}`;
      if (Object.prototype.hasOwnProperty.call(type.object, key)) {
        checkFields(child, type.object[key], file, where_key, problems);
      } else if (type.index) {
        checkFields(child, type.index, file, where_key, problems);
      } else {
        const known = Object.keys(type.object);
        const close = known.filter((k) => editDistance(k.toLowerCase(), key.toLowerCase()) <= 2);
        problems.push(`unknown field ${where_key}` + (close.length ? ` (did you mean ${close.join(" or ")}?)` : ""));
      }
    }
  }
}

function editDistance(a, b) {
  const row = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    let diagonal = row[0];
    row[0] = i;
    for (let j = 1; j <= b.length; j++) {
      const above = row[j];
      row[j] = Math.min(row[j] + 1, row[j - 1] + 1, diagonal + (a[i - 1] === b[j - 1] ? 0 : 1));
      diagonal = above;
    }
  }
  return row[b.length];
}

// ---------------------------------------------------------------------------------------------
// Cross-object references.

function podTemplate(object) {
  const spec = object.spec || {};
  if (["Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job"].includes(object.kind)) return spec.template;
  if (object.kind === "CronJob") return spec.jobTemplate?.spec?.template;
  if (object.kind === "Pod") return object;
  return undefined;
}

function selectorMatches(selector, labels) {
  if (!selector) return false;
  for (const [key, value] of Object.entries(selector.matchLabels || {})) {
    if (labels[key] !== value) return false;
  }
  for (const expression of selector.matchExpressions || []) {
    const has = Object.prototype.hasOwnProperty.call(labels, expression.key);
    const value = labels[expression.key];
    switch (expression.operator) {
      case "In": if (!has || !expression.values.includes(value)) return false; break;
      case "NotIn": if (has && expression.values.includes(value)) return false; break;
      case "Exists": if (!has) return false; break;
      case "DoesNotExist": if (has) return false; break;
      default: return false;
    }
  }
  return Object.keys(selector.matchLabels || {}).length + (selector.matchExpressions || []).length > 0;
}

function checkReferences(objects, external) {
  const problems = [];
  const key = (kind, namespace, name) => `${kind}/${namespace || ""}/${name}`;
  const present = new Set(objects.map((o) => key(o.kind, o.metadata?.namespace, o.metadata?.name)));
  // cert-manager writes each Certificate's Secret (tls.crt, tls.key, ca.crt).
  const certificates = objects.filter((o) => o.kind === "Certificate" && o.apiVersion?.startsWith("cert-manager.io/"));
  for (const certificate of certificates) {
    if (certificate.spec?.secretName) present.add(key("Secret", certificate.metadata?.namespace, certificate.spec.secretName));
  }
  const exists = (kind, namespace, name) =>
    present.has(key(kind, namespace, name)) || external.has(`${kind}/${name}`);
  const workloads = objects.filter((o) => podTemplate(o) !== undefined);
  const services = objects.filter((o) => o.kind === "Service");

  for (const object of workloads) {
    const id = `${object.kind}/${object.metadata.name}`;
    const namespace = object.metadata.namespace;
    const template = podTemplate(object);
    const labels = template.metadata?.labels || {};
    const podSpec = template.spec || {};
    if (object.kind !== "Pod" && object.kind !== "Job" && object.kind !== "CronJob" &&
        !selectorMatches(object.spec.selector, labels)) {
      problems.push(`${id}: spec.selector does not match the pod template's labels`);
    }
    if (object.kind === "StatefulSet") {
      const service = services.find((s) => s.metadata.name === object.spec.serviceName && s.metadata.namespace === namespace);
      if (!service) problems.push(`${id}: serviceName ${object.spec.serviceName} is not a Service in the set`);
      else if (service.spec.clusterIP !== "None") problems.push(`${id}: Service ${object.spec.serviceName} must be headless (clusterIP: None)`);
    }
    const volumes = new Map((podSpec.volumes || []).map((v) => [v.name, v]));
    for (const volume of volumes.values()) {
      if (volume.configMap && !exists("ConfigMap", namespace, volume.configMap.name)) problems.push(`${id}: volume ${volume.name}: ConfigMap ${volume.configMap.name} not found`);
      if (volume.secret && !exists("Secret", namespace, volume.secret.secretName)) problems.push(`${id}: volume ${volume.name}: Secret ${volume.secret.secretName} not found`);
      if (volume.persistentVolumeClaim && !exists("PersistentVolumeClaim", namespace, volume.persistentVolumeClaim.claimName)) {
        problems.push(`${id}: volume ${volume.name}: PersistentVolumeClaim ${volume.persistentVolumeClaim.claimName} not found`);
      }
    }
    for (const container of [...(podSpec.initContainers || []), ...(podSpec.containers || [])]) {
      const where = `${id} container ${container.name}`;
      for (const mount of container.volumeMounts || []) {
        if (!volumes.has(mount.name)) problems.push(`${where}: volumeMount ${mount.name} has no volume`);
      }
      for (const source of container.envFrom || []) {
        if (source.configMapRef && !exists("ConfigMap", namespace, source.configMapRef.name)) problems.push(`${where}: envFrom ConfigMap ${source.configMapRef.name} not found`);
        if (source.secretRef && !exists("Secret", namespace, source.secretRef.name)) problems.push(`${where}: envFrom Secret ${source.secretRef.name} not found`);
      }
      for (const variable of container.env || []) {
        const from = variable.valueFrom || {};
        if (from.configMapKeyRef && !exists("ConfigMap", namespace, from.configMapKeyRef.name)) problems.push(`${where}: env ${variable.name}: ConfigMap ${from.configMapKeyRef.name} not found`);
        if (from.secretKeyRef && !exists("Secret", namespace, from.secretKeyRef.name)) problems.push(`${where}: env ${variable.name}: Secret ${from.secretKeyRef.name} not found`);
      }
      const portNumbers = new Set((container.ports || []).map((p) => p.containerPort));
      const portNames = new Set((container.ports || []).map((p) => p.name).filter(Boolean));
      for (const probeName of ["startupProbe", "readinessProbe", "livenessProbe"]) {
        const probe = container[probeName];
        if (!probe) continue;
        const port = probe.grpc?.port ?? probe.httpGet?.port ?? probe.tcpSocket?.port;
        if (port === undefined) continue;
        if (typeof port === "number" ? !portNumbers.has(port) : !portNames.has(port)) {
          problems.push(`${where}: ${probeName} port ${port} is not one of the container's ports`);
        }
      }
    }
  }

  for (const service of services) {
    const id = `Service/${service.metadata.name}`;
    const selector = service.spec.selector;
    if (!selector) continue;
    const selected = workloads.filter((w) => w.metadata.namespace === service.metadata.namespace &&
      selectorMatches({ matchLabels: selector }, podTemplate(w).metadata?.labels || {}));
    if (selected.length === 0) {
      problems.push(`${id}: selector ${JSON.stringify(selector)} matches no pod template`);
      continue;
    }
    for (const port of service.spec.ports || []) {
      if (typeof port.targetPort !== "string") continue;
      const found = selected.some((w) => (podTemplate(w).spec.containers || []).some((c) => (c.ports || []).some((p) => p.name === port.targetPort)));
      if (!found) problems.push(`${id}: targetPort ${port.targetPort} is not a named container port of the selected pods`);
    }
  }

  for (const monitor of objects.filter((o) => o.kind === "ServiceMonitor")) {
    const id = `ServiceMonitor/${monitor.metadata.name}`;
    const selected = services.filter((s) => s.metadata.namespace === monitor.metadata.namespace &&
      selectorMatches(monitor.spec.selector, s.metadata.labels || {}));
    if (selected.length === 0) problems.push(`${id}: selector matches no Service`);
    for (const endpoint of monitor.spec.endpoints || []) {
      for (const service of selected) {
        if (endpoint.port && !(service.spec.ports || []).some((p) => p.name === endpoint.port)) {
          problems.push(`${id}: Service ${service.metadata.name} has no port named ${endpoint.port}`);
        }
      }
    }
  }

  for (const hpa of objects.filter((o) => o.kind === "HorizontalPodAutoscaler")) {
    const target = hpa.spec.scaleTargetRef;
    if (!exists(target.kind, hpa.metadata.namespace, target.name)) problems.push(`HorizontalPodAutoscaler/${hpa.metadata.name}: target ${target.kind}/${target.name} not found`);
  }
  for (const pdb of objects.filter((o) => o.kind === "PodDisruptionBudget")) {
    const matched = workloads.some((w) => w.metadata.namespace === pdb.metadata.namespace && selectorMatches(pdb.spec.selector, podTemplate(w).metadata?.labels || {}));
    if (!matched) problems.push(`PodDisruptionBudget/${pdb.metadata.name}: selector matches no pod template`);
  }
  for (const policy of objects.filter((o) => o.kind === "NetworkPolicy")) {
    const selector = policy.spec?.podSelector || {};
    const empty = Object.keys(selector.matchLabels || {}).length + (selector.matchExpressions || []).length === 0;
    if (empty) continue;  // every pod of the namespace
    const matched = workloads.some((w) => w.metadata.namespace === policy.metadata.namespace && selectorMatches(selector, podTemplate(w).metadata?.labels || {}));
    if (!matched) problems.push(`NetworkPolicy/${policy.metadata.name}: podSelector matches no pod template`);
  }
  for (const certificate of certificates) {
    const issuer = certificate.spec?.issuerRef || {};
    const kind = issuer.kind || "Issuer";
    if ((issuer.group || "cert-manager.io") !== "cert-manager.io") continue;  // external issuers
    const namespace = kind === "ClusterIssuer" ? undefined : certificate.metadata?.namespace;
    if (!exists(kind, namespace, issuer.name)) problems.push(`Certificate/${certificate.metadata.name}: issuerRef ${kind} ${issuer.name} not found`);
  }
  for (const issuer of objects.filter((o) => o.kind === "Issuer" && o.apiVersion?.startsWith("cert-manager.io/"))) {
    const secret = issuer.spec?.ca?.secretName;
    if (secret && !exists("Secret", issuer.metadata?.namespace, secret)) problems.push(`Issuer/${issuer.metadata.name}: ca.secretName: Secret ${secret} not found`);
  }
  return problems;
}

// ---------------------------------------------------------------------------------------------

// The object as the API server decodes it, where that differs from the schema's letter: a
// Secret's base64 data may be wrapped over lines (kustomize's secretGenerator wraps at 70
// columns; Go's base64 decoder skips line breaks).
function forSchema(object) {
  if (object.kind !== "Secret" || object.apiVersion !== "v1" || !isPlainObject(object.data)) return object;
  const data = Object.fromEntries(Object.entries(object.data).map(([key, value]) =>
    [key, typeof value === "string" ? value.replace(/[\r\n]/g, "") : value]));
  return { ...object, data };
}

async function main(argv) {
  const inputs = [];
  const external = new Set();
  for (let i = 0; i < argv.length; i++) {
    if (argv[i] === "--external") external.add(argv[++i]);
    else inputs.push(argv[i]);
  }
  if (inputs.length === 0) {
    console.error("usage: validate-manifests.mjs FILE.yaml|- ... [--external Kind/name ...]");
    return 2;
  }
  const objects = [];
  for (const input of inputs) {
    const text = fs.readFileSync(input === "-" ? 0 : input, "utf8");
    for (const document of yaml.loadAll(text)) {
      if (document !== null && document !== undefined) objects.push(document);
    }
  }
  if (objects.length === 0) {
    console.error("validate-manifests: no objects in the input");
    return 1;
  }
  let failures = 0;
  for (const object of objects) {
    const id = `${object.apiVersion}/${object.kind}/${object.metadata?.name}`;
    const problems = [];
    let Model;
    try {
      const module = await import(modelModule(object.apiVersion, object.kind));
      Model = module[object.kind];
    } catch (error) {
      problems.push(`no schema for apiVersion ${object.apiVersion} kind ${object.kind}`);
    }
    if (Model) {
      try {
        new Model(forSchema(object)).validate();
      } catch (error) {
        problems.push(`schema: ${error.message}`);
      }
      const declarations = resolveDeclarationModule(modelModule(object.apiVersion, object.kind), process.cwd());
      const root = declarations && resolveRef(`I${object.kind}`, declarations);
      if (!root) problems.push(`no type declarations for ${object.kind}`);
      else checkFields(object, root.type, root.file, "", problems);
    }
    if (problems.length) {
      failures++;
      for (const problem of problems) console.log(`FAIL ${id}: ${problem}`);
    } else {
      console.log(`ok   ${id}`);
    }
  }
  const referenceProblems = checkReferences(objects, external);
  for (const problem of referenceProblems) console.log(`FAIL references: ${problem}`);
  console.log(`validate-manifests: ${objects.length} objects, ${failures} with schema problems, ` +
              `${referenceProblems.length} reference problems`);
  return failures + referenceProblems.length === 0 ? 0 : 1;
}

process.exitCode = await main(process.argv.slice(2));
