/**
 * The Helm chart (infra/helm/sophia), without a cluster: `helm lint` and `helm template` for several value sets,
 * every rendered manifest validated offline against the Kubernetes schemas (kubernetes-validate --strict: unknown
 * fields fail), and the things that break deployments checked against the code itself — the API's probes hit the
 * health route the Nest controller declares (the app is booted and asked), the workers' probes hit /health on the
 * metrics port that SOPHIA_METRICS_PORT opens (observability/serve.ts, started and asked), every environment
 * variable the chart sets is read by the code and every value it gives passes the code's own parsing, no secret is
 * ever a literal, GPU workers ask for their GPU, the grace period covers SOPHIA_SHUTDOWN_GRACE, nothing runs as root.
 *
 * Needs helm (SOPHIA_HELM, else $SOPHIA_TOOLS_DIR/helm/bin/helm) and kubernetes-validate (SOPHIA_KUBERNETES_VALIDATE,
 * else $SOPHIA_TOOLS_DIR/helm/venv/bin/kubernetes-validate): `bash infra/local/install-helm.sh` installs both.
 * Missing, every test fails saying so (they never skip).
 */
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import type { INestApplication } from '@nestjs/common';
import type { Client } from '@temporalio/client';
import { parseAllDocuments } from 'yaml';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createApiApp } from '../../api/app';
import { loadApiConfig } from '../../api/config';
import { parseDurationMs } from '../../common/duration';
import { codeTokens } from '../testing/code-tokens';
import { logFormat } from '../../observability/log';
import { tracingConfigured } from '../../observability/tracing';
import { metricsPort, serveMetrics } from '../../observability/serve';
import { s3OptionsFromEnv } from '../../storage/open';
import type { Storage } from '../../storage/types';
import { DEFAULT_TEMPORAL_CONFIG, loadTemporalConfig } from '../../temporal.config';

const ROOT = path.resolve(__dirname, '..', '..');
/** SOPHIA_TOOLS_DIR as infra/local/lib.sh resolves it: the environment, else defaults.env; relative to the root. */
function toolsDir(): string {
  const dir = process.env.SOPHIA_TOOLS_DIR || /^SOPHIA_TOOLS_DIR=(.*)$/m.exec(readFileSync(path.join(ROOT, 'infra', 'local', 'defaults.env'), 'utf8'))?.[1]?.trim() || '.tools';
  return path.resolve(ROOT, dir);
}
const CHART = path.join(ROOT, 'infra', 'helm', 'sophia');
const INSTALL = 'bash infra/local/install-helm.sh';
const HELM = process.env.SOPHIA_HELM || path.join(toolsDir(), 'helm', 'bin', 'helm');
const VALIDATE = process.env.SOPHIA_KUBERNETES_VALIDATE || path.join(toolsDir(), 'helm', 'venv', 'bin', 'kubernetes-validate');
/** The oldest Kubernetes the chart supports (Chart.yaml kubeVersion) and the newest kubernetes-validate knows. */
const KUBE_VERSIONS = ['1.29.0', '1.37.0'];

/** Throws, naming the install script, when helm or kubernetes-validate is missing: these tests never skip. */
function missingTools(): string | undefined {
  const missing = [HELM, VALIDATE].filter((p) => !existsSync(p));
  if (missing.length === 0) return undefined;
  return `${missing.join(' and ')} not found: run \`${INSTALL}\` (it builds the pinned helm into .tools/helm/bin and installs kubernetes-validate into .tools/helm/venv), or set SOPHIA_HELM to a helm binary`;
}

// ---------------------------------------------------------------------------------------------------------------
// Value sets

const base = {
  temporal: { address: 'temporal-frontend.temporal.svc.cluster.local:7233' },
  storage: { url: 's3://sophia-runs/prod', s3: { credentials: { existingSecret: 'sophia-s3' } } },
  api: { keys: { existingSecret: 'sophia-api-keys' } },
};

type Values = Record<string, unknown>;
function merge(a: Values, b: Values): Values {
  const out: Values = { ...a };
  for (const [k, v] of Object.entries(b)) {
    const prev = out[k];
    out[k] = v && typeof v === 'object' && !Array.isArray(v) && prev && typeof prev === 'object' && !Array.isArray(prev) ? merge(prev as Values, v as Values) : v;
  }
  return out;
}

const CASES: Record<string, Values> = {
  defaults: base,
  'gpu workers: 2 replicas, nodeSelector, tolerations, affinity': merge(base, {
    gpuWorker: {
      replicas: 2,
      nodeSelector: { 'nvidia.com/gpu.present': 'true' },
      tolerations: [{ key: 'nvidia.com/gpu', operator: 'Exists', effect: 'NoSchedule' }],
      affinity: { nodeAffinity: { requiredDuringSchedulingIgnoredDuringExecution: { nodeSelectorTerms: [{ matchExpressions: [{ key: 'gpu-type', operator: 'In', values: ['h100'] }] }] } } },
      memoryGb: 70,
      modelCache: { existingClaim: 'sophia-models' },
    },
    cpuWorker: { replicas: 3 },
    shutdownGraceSeconds: 300,
  }),
  'ingress on': merge(base, {
    api: { ingress: { enabled: true, className: 'nginx', annotations: { 'cert-manager.io/cluster-issuer': 'letsencrypt' }, hosts: [{ host: 'sophia.example.org', paths: [{ path: '/', pathType: 'Prefix' }] }], tls: [{ secretName: 'sophia-tls', hosts: ['sophia.example.org'] }] } },
  }),
  'Temporal Cloud with an API key secret and TLS, S3 through IRSA': {
    deployment: 'lab',
    temporal: { address: 'us-east-1.aws.api.temporal.io:7233', namespace: 'sophia-prod.a1b2c', tls: true, apiKey: { existingSecret: 'temporal-cloud', key: 'api-key' } },
    storage: { url: 's3://sophia-runs', s3: { region: 'eu-west-1' } },
    serviceAccount: { annotations: { 'eks.amazonaws.com/role-arn': 'arn:aws:iam::123456789012:role/sophia' } },
    api: { keys: { existingSecret: 'sophia-api-keys' } },
    log: { level: 'INFO' },
  },
  'dashboards on, judges, every optional setting': merge(base, {
    dashboards: { enabled: true, annotations: { grafana_folder: 'Sophia' } },
    tracing: { otlpEndpoint: 'http://jaeger-collector.observability:4318' },
    storage: { s3: { endpoint: 'http://seaweedfs-s3.storage.svc:8333', region: 'us-east-1', forcePathStyle: true, partSizeMb: 32, queueSize: 8 } },
    cpuWorker: { judges: { existingSecret: 'sophia-judges', key: 'judges.yaml', apiKeysSecret: 'sophia-judge-keys' } },
    api: {
      settings: { bodyLimit: 524288, eventsPoll: 2000, minScheduleInterval: '30m', maxBackfillRuns: 5, maxRunningRuns: 4, maxRunningRunsPerLine: 1, maxRunMemoryGb: 70, maxRunStorageGb: 500, maxRunSteps: 100000 },
    },
    gpuWorker: { gpusPerWorker: 2, memoryGb: 140 },
    metrics: { port: 9500 },
    temporal: { tls: false, namespace: 'sophia' },
  }),
};

// ---------------------------------------------------------------------------------------------------------------
// Rendering

interface EnvVar {
  name: string;
  value?: string;
  valueFrom?: { secretKeyRef?: { name: string; key: string }; [k: string]: unknown };
}
interface Probe {
  httpGet?: { path: string; port: string | number };
}
interface Container {
  name: string;
  image: string;
  args?: string[];
  ports?: { name?: string; containerPort: number }[];
  env?: EnvVar[];
  envFrom?: { secretRef?: { name: string } }[];
  readinessProbe?: Probe;
  livenessProbe?: Probe;
  startupProbe?: Probe;
  resources?: { limits?: Record<string, unknown>; requests?: Record<string, unknown> };
  securityContext?: { runAsNonRoot?: boolean; runAsUser?: number; allowPrivilegeEscalation?: boolean; readOnlyRootFilesystem?: boolean };
  volumeMounts?: { name: string; mountPath: string }[];
}
interface PodSpec {
  containers: Container[];
  securityContext?: { runAsNonRoot?: boolean; runAsUser?: number };
  terminationGracePeriodSeconds?: number;
  volumes?: { name: string; secret?: { secretName: string; items?: { key: string; path: string }[] }; [k: string]: unknown }[];
  nodeSelector?: Record<string, string>;
  tolerations?: unknown[];
  affinity?: unknown;
}
interface Manifest {
  apiVersion: string;
  kind: string;
  metadata: { name: string; labels?: Record<string, string>; annotations?: Record<string, string> };
  spec?: { replicas?: number; template?: { metadata?: { annotations?: Record<string, string> }; spec: PodSpec }; [k: string]: unknown };
  data?: Record<string, string>;
}

interface Rendered {
  values: Values;
  valuesFile: string;
  yamlFile: string;
  manifests: Manifest[];
}

let work: string;
const rendered = new Map<string, Rendered>();

function run(cmd: string, args: string[]): { status: number; out: string } {
  const r = spawnSync(cmd, args, { encoding: 'utf8', maxBuffer: 64 * 1024 * 1024 });
  if (r.error) throw r.error;
  return { status: r.status ?? -1, out: `${r.stdout}${r.stderr}` };
}

function writeValues(name: string, values: Values): string {
  const file = path.join(work, `${name.replace(/[^a-z0-9]+/gi, '-')}.values.json`);
  writeFileSync(file, JSON.stringify(values, null, 2));
  return file;
}

function template(valuesFile: string): { status: number; out: string } {
  return run(HELM, ['template', 'sophia', CHART, '--namespace', 'sophia', '-f', valuesFile]);
}

function workloads(r: Rendered): Manifest[] {
  return r.manifests.filter((m) => m.kind === 'Deployment');
}
function component(m: Manifest): string {
  return m.metadata.labels?.['app.kubernetes.io/component'] ?? '';
}
function podSpec(m: Manifest): PodSpec {
  return m.spec!.template!.spec;
}
function envOf(c: Container): Map<string, EnvVar> {
  return new Map((c.env ?? []).map((e) => [e.name, e]));
}
/** A container's environment as the process would see it (secret references filled with a stand-in). */
function processEnv(c: Container): Record<string, string> {
  const env: Record<string, string> = {};
  for (const e of c.env ?? []) env[e.name] = e.value ?? (e.valueFrom?.secretKeyRef ? 'from-a-secret-0123456789abcdef' : '');
  return env;
}

// ---------------------------------------------------------------------------------------------------------------
// What the code reads


/** The metric names observability/metrics.ts registers. */
function sophiaMetricNames(): string[] {
  const text = readFileSync(path.join(ROOT, 'observability', 'metrics.ts'), 'utf8');
  return [...new Set([...text.matchAll(/name:\s*'(sophia_[a-z0-9_]+)'/g)].map((m) => m[1]!))];
}

// ---------------------------------------------------------------------------------------------------------------

beforeAll(() => {
  if (missingTools()) return;
  work = mkdtempSync(path.join(tmpdir(), 'sophia-chart-'));
  for (const [name, values] of Object.entries(CASES)) {
    const valuesFile = writeValues(name, values);
    const r = template(valuesFile);
    if (r.status !== 0) throw new Error(`helm template (${name}) failed:\n${r.out}`);
    const yamlFile = valuesFile.replace(/\.values\.json$/, '.yaml');
    writeFileSync(yamlFile, r.out);
    const manifests = parseAllDocuments(r.out)
      .map((d) => d.toJS() as Manifest | null)
      .filter((m): m is Manifest => m !== null);
    rendered.set(name, { values, valuesFile, yamlFile, manifests });
  }
}, 120_000);

afterAll(() => {
  if (work) rmSync(work, { recursive: true, force: true });
});

function each(fn: (r: Rendered, name: string) => void): void {
  const missing = missingTools();
  if (missing) throw new Error(missing);
  for (const [name, r] of rendered) {
    try {
      fn(r, name);
    } catch (err) {
      if (err instanceof Error) err.message = `[${name}] ${err.message}`;
      throw err;
    }
  }
}

describe('helm chart infra/helm/sophia', () => {
  it('has its tools: helm and kubernetes-validate', () => {
    const missing = missingTools();
    if (missing) throw new Error(missing);
    expect(run(HELM, ['version', '--short']).out).toMatch(/^v4\./);
  });

  it('passes helm lint --strict with every value set', () => {
    each((r) => {
      const lint = run(HELM, ['lint', '--strict', CHART, '-f', r.valuesFile]);
      expect(lint.status, lint.out).toBe(0);
    });
  });

  it('renders what each value set asks for', () => {
    each((r, name) => {
      const kinds = r.manifests.map((m) => `${m.kind}/${m.metadata.name}`).sort();
      expect(kinds).toEqual(
        expect.arrayContaining(['Deployment/sophia-api', 'Deployment/sophia-worker-cpu', 'Deployment/sophia-worker-gpu', 'Service/sophia-api', 'ServiceAccount/sophia']),
      );
      expect(kinds.includes('Ingress/sophia-api')).toBe(name === 'ingress on');
      expect(kinds.includes('ConfigMap/sophia-dashboards')).toBe(name.startsWith('dashboards on'));
    });
  });

  it('validates every rendered manifest against the Kubernetes schemas, offline and strict', () => {
    const missing = missingTools();
    if (missing) throw new Error(missing);
    const files = [...rendered.values()].map((r) => r.yamlFile);
    for (const version of KUBE_VERSIONS) {
      const v = run(VALIDATE, ['--strict', '--quiet', '-k', version, ...files]);
      expect(v.status, `kubernetes-validate -k ${version}:\n${v.out}`).toBe(0);
      expect(v.out).not.toMatch(/ERROR|WARN/);
    }
  });

  it('kubernetes-validate does reject unknown fields (the strict check is real)', () => {
    const missing = missingTools();
    if (missing) throw new Error(missing);
    const bad = path.join(work, 'bad.yaml');
    const text = readFileSync([...rendered.values()][0]!.yamlFile, 'utf8').replace('terminationGracePeriodSeconds:', 'terminationGracePeriodSecond:');
    writeFileSync(bad, text);
    const v = run(VALIDATE, ['--strict', '--quiet', bad]);
    expect(v.status).not.toBe(0);
    expect(v.out).toContain('terminationGracePeriodSecond');
  });

  it('runs the API and the workers with the commands the CLI knows, from the right images', () => {
    each((r) => {
      for (const m of workloads(r)) {
        const c = podSpec(m).containers[0]!;
        const expected: Record<string, string[]> = { api: ['api'], 'worker-cpu': ['worker', '--queue', 'cpu'], 'worker-gpu': ['worker', '--queue', 'gpu'] };
        expect(c.args).toEqual(expected[component(m)]);
        expect(c.image).toMatch(component(m) === 'worker-gpu' ? /^sophia-gpu:0\.1\.0$/ : /^sophia:0\.1\.0$/);
      }
    });
  });

  it('sets only environment variables the code reads', () => {
    const tokens = codeTokens(ROOT);
    // Sanity: the scan sees names the code is known to read.
    expect(tokens).toContain('TEMPORAL_ADDRESS');
    expect(tokens).toContain('SOPHIA_API_KEYS_FILE');
    const seen = new Set<string>();
    each((r) => {
      for (const m of workloads(r)) {
        for (const e of podSpec(m).containers[0]!.env ?? []) {
          seen.add(e.name);
          expect(tokens.has(e.name), `${m.metadata.name} sets ${e.name}, which no .ts file outside tests reads`).toBe(true);
        }
      }
    });
    // The value sets above reach every variable the chart can set.
    const templates = readdirSync(path.join(CHART, 'templates'))
      .map((f) => readFileSync(path.join(CHART, 'templates', f), 'utf8'))
      .join('\n');
    const inTemplates = new Set([...templates.matchAll(/(?:name: |optionalEnv" \(list ")([A-Z][A-Z0-9_]+)/g)].map((m) => m[1]!));
    expect([...inTemplates].filter((n) => !seen.has(n))).toEqual([]);
  });

  it('gives values the code accepts (each container env through the code\'s own parsers)', () => {
    each((r) => {
      for (const m of workloads(r)) {
        const env = processEnv(podSpec(m).containers[0]!);
        const temporal = loadTemporalConfig(env);
        expect(temporal.connection.address).toBe(env.TEMPORAL_ADDRESS);
        const storage = /^s3:\/\/([^/]+)\/?(.*)$/.exec(env.SOPHIA_STORAGE ?? '');
        expect(storage, 'SOPHIA_STORAGE is s3://').not.toBeNull();
        s3OptionsFromEnv(storage![1]!, storage![2]!, env);
        logFormat(env);
        tracingConfigured(env);
        if (component(m) !== 'api') expect(metricsPort(env)).toBeGreaterThan(0);
        if (component(m) === 'api') {
          // The keys file is a mounted secret; the rest of the API's settings parse.
          loadApiConfig({ ...env, SOPHIA_API_KEYS_FILE: undefined, SOPHIA_API_KEYS: 'probe:read:0123456789abcdef0123' }, env.SOPHIA_STORAGE!);
        }
      }
    });
    const cloud = rendered.get('Temporal Cloud with an API key secret and TLS, S3 through IRSA');
    const cloudEnv = processEnv(podSpec(workloads(cloud!)[0]!).containers[0]!);
    const config = loadTemporalConfig(cloudEnv);
    expect(config.connection.tls).toBe(true);
    expect(config.connection.apiKey).toBeDefined();
    expect(config.deployment).toBe('lab');
  });

  it('puts no secret in a manifest: secretKeyRef and secret volumes only', () => {
    each((r) => {
      expect(r.manifests.filter((m) => m.kind === 'Secret')).toEqual([]);
      for (const m of workloads(r)) {
        const spec = podSpec(m);
        const c = spec.containers[0]!;
        const secretVolumes = new Set((spec.volumes ?? []).filter((v) => v.secret).map((v) => v.name));
        const secretMounts = (c.volumeMounts ?? []).filter((v) => secretVolumes.has(v.name)).map((v) => v.mountPath);
        for (const e of c.env ?? []) {
          // Inline keys would put the secret in the pod spec: the chart only ever mounts the file.
          expect(['SOPHIA_API_KEYS', 'SOPHIA_JUDGES']).not.toContain(e.name);
          if (/_FILE$/.test(e.name)) {
            expect(secretMounts.some((p) => e.value!.startsWith(`${p}/`)), `${e.name}=${e.value} is not in a secret volume`).toBe(true);
          } else if (/KEY|SECRET|TOKEN|PASSWORD|CREDENTIAL/.test(e.name)) {
            expect(e.value, `${e.name} has a literal value`).toBeUndefined();
            expect(e.valueFrom?.secretKeyRef?.name, `${e.name} is not a secretKeyRef`).toBeTruthy();
          }
        }
        for (const from of c.envFrom ?? []) expect(from.secretRef?.name).toBeTruthy();
      }
      // The Secret names given appear, and nothing that looks like a key does.
      const text = readFileSync(r.yamlFile, 'utf8');
      expect(text).not.toMatch(/AKIA[0-9A-Z]{16}|-----BEGIN|[0-9a-f]{40,}/);
    });
  });

  it('refuses a literal secret in values (the schema has no place for one)', () => {
    const missing = missingTools();
    if (missing) throw new Error(missing);
    for (const literal of [
      { temporal: { apiKey: { existingSecret: 'x', value: 'tc-0123456789' } } },
      { storage: { s3: { credentials: { accessKeyId: 'AKIA…', secretAccessKey: 'shh' } } } },
      { api: { keys: { inline: 'admin:read+write:0123456789abcdef' } } },
    ]) {
      const r = template(writeValues('literal', merge(base, literal)));
      expect(r.status, r.out).not.toBe(0);
      expect(r.out).toMatch(/additional propert/i);
    }
  });

  it('fails rendering, naming the value, when a required one is missing', () => {
    const missing = missingTools();
    if (missing) throw new Error(missing);
    const cases: [Values, string][] = [
      [merge(base, { temporal: { address: '' } }), 'temporal.address is required'],
      [merge(base, { storage: { url: '' } }), 'storage.url is required'],
      [merge(base, { api: { keys: { existingSecret: '' } } }), 'api.keys.existingSecret is required'],
    ];
    for (const [values, message] of cases) {
      const r = template(writeValues('required', values));
      expect(r.status).not.toBe(0);
      expect(r.out).toContain(message);
    }
  });

  it('GPU workers ask for their GPUs; the API and CPU workers do not', () => {
    each((r) => {
      const wanted = Number((r.values.gpuWorker as { gpusPerWorker?: number } | undefined)?.gpusPerWorker ?? 1);
      for (const m of workloads(r)) {
        const limits = podSpec(m).containers[0]!.resources?.limits ?? {};
        if (component(m) === 'worker-gpu') {
          expect(limits['nvidia.com/gpu']).toBe(wanted);
          expect(m.spec!.strategy).toEqual({ type: 'RollingUpdate', rollingUpdate: { maxSurge: 0, maxUnavailable: 1 } });
        } else expect(limits['nvidia.com/gpu']).toBeUndefined();
      }
    });
    const gpu = workloads(rendered.get('gpu workers: 2 replicas, nodeSelector, tolerations, affinity')!).find((m) => component(m) === 'worker-gpu')!;
    expect(gpu.spec!.replicas).toBe(2);
    expect(podSpec(gpu).nodeSelector).toEqual({ 'nvidia.com/gpu.present': 'true' });
    expect(podSpec(gpu).tolerations).toHaveLength(1);
    expect(podSpec(gpu).affinity).toBeDefined();
    // A larger memory request than the CPU workers'.
    const mem = (m: Manifest) => String(podSpec(m).containers[0]!.resources?.requests?.memory);
    const cpu = workloads(rendered.get('defaults')!).find((m) => component(m) === 'worker-cpu')!;
    expect(parseInt(mem(gpu), 10)).toBeGreaterThan(parseInt(mem(cpu), 10));
  });

  it('lets a worker finish its checkpoint: terminationGracePeriodSeconds > SOPHIA_SHUTDOWN_GRACE', () => {
    each((r) => {
      const grace = Number(r.values.shutdownGraceSeconds ?? 60);
      for (const m of workloads(r).filter((w) => component(w) !== 'api')) {
        const spec = podSpec(m);
        const env = envOf(spec.containers[0]!);
        const ms = parseDurationMs(env.get('SOPHIA_SHUTDOWN_GRACE')!.value!);
        expect(ms).toBe(grace * 1000);
        // The code reads it as the same grace.
        expect(loadTemporalConfig(processEnv(spec.containers[0]!)).workers.gpu.shutdownGraceTimeMs).toBe(ms);
        expect(spec.terminationGracePeriodSeconds! * 1000).toBeGreaterThan(ms!);
      }
    });
  });

  it('runs every container as a non-root user, the image\'s own', () => {
    const dockerfile = readFileSync(path.join(ROOT, 'infra', 'docker', 'Dockerfile'), 'utf8');
    const imageUsers = [...dockerfile.matchAll(/^USER (\d+)(?::\d+)?$/gm)].map((m) => Number(m[1]));
    expect(imageUsers.length).toBeGreaterThan(0);
    each((r) => {
      for (const m of workloads(r)) {
        const spec = podSpec(m);
        expect(spec.securityContext?.runAsNonRoot).toBe(true);
        expect(spec.securityContext?.runAsUser).toBeGreaterThan(0);
        for (const u of imageUsers) expect(spec.securityContext?.runAsUser).toBe(u);
        const sc = spec.containers[0]!.securityContext;
        expect(sc?.allowPrivilegeEscalation).toBe(false);
        expect(sc?.runAsUser ?? spec.securityContext?.runAsUser).not.toBe(0);
      }
    });
  });

  it('serves metrics where SOPHIA_METRICS_PORT says, named metrics, annotated for scraping', () => {
    each((r) => {
      for (const m of workloads(r).filter((w) => component(w) !== 'api')) {
        const c = podSpec(m).containers[0]!;
        const port = Number(envOf(c).get('SOPHIA_METRICS_PORT')!.value);
        expect(c.ports).toEqual([{ name: 'metrics', containerPort: port, protocol: 'TCP' }]);
        const annotations = m.spec!.template!.metadata!.annotations!;
        expect(annotations['prometheus.io/scrape']).toBe('true');
        expect(annotations['prometheus.io/port']).toBe(String(port));
        expect(annotations['prometheus.io/path']).toBe('/metrics');
      }
    });
  });

  it('probes the workers on /health of the metrics port, which the worker\'s metrics server answers', async () => {
    const probes = new Set<string>();
    each((r) => {
      for (const m of workloads(r).filter((w) => component(w) !== 'api')) {
        const c = podSpec(m).containers[0]!;
        for (const p of [c.readinessProbe, c.livenessProbe, c.startupProbe]) {
          expect(p?.httpGet?.port).toBe('metrics');
          probes.add(p!.httpGet!.path);
        }
      }
    });
    const server = await serveMetrics({ port: 0, host: '127.0.0.1' });
    try {
      const base = server.url.replace(/\/metrics$/, '');
      for (const p of probes) expect((await fetch(`${base}${p}`)).status, p).toBe(200);
      expect((await fetch(`${base}/no-such-route`)).status).toBe(404);
    } finally {
      await server.close();
    }
  });

  it('probes the API on its public health route, which the booted app answers without a key', async () => {
    const probes = new Set<string>();
    each((r) => {
      const api = workloads(r).find((m) => component(m) === 'api')!;
      const c = podSpec(api).containers[0]!;
      const http = c.ports!.find((p) => p.name === 'http')!;
      expect(String(http.containerPort)).toBe(envOf(c).get('SOPHIA_API_PORT')!.value);
      for (const p of [c.readinessProbe, c.livenessProbe, c.startupProbe]) {
        expect(p?.httpGet?.port).toBe('http');
        probes.add(p!.httpGet!.path);
      }
      // The Service and the Ingress reach the same port.
      const svc = r.manifests.find((m) => m.kind === 'Service')!;
      expect((svc.spec!.ports as { targetPort: string }[])[0]!.targetPort).toBe('http');
    });
    let storageUp = true;
    const storage = { location: 's3://sophia-runs/prod', head: async () => (storageUp ? undefined : Promise.reject(new Error('down'))) } as unknown as Storage;
    const client = { connection: { healthService: { check: () => Promise.resolve({}) } } } as unknown as Client;
    const config = loadApiConfig({ SOPHIA_API_KEYS: 'probe:read:0123456789abcdef0123' }, storage.location);
    const app: INestApplication = await createApiApp({ settings: { config, temporal: DEFAULT_TEMPORAL_CONFIG }, client, storage, logLevels: false });
    await app.listen(0, '127.0.0.1');
    try {
      const url = (await app.getUrl()).replace('[::1]', '127.0.0.1');
      for (const p of probes) {
        expect((await fetch(`${url}${p}`)).status, p).toBe(200);
        storageUp = false;
        expect((await fetch(`${url}${p}`)).status, `${p} with the storage down`).toBe(503);
        storageUp = true;
      }
      // A route that needs a key answers 401 without one: the probe path is public, not just any path.
      expect((await fetch(`${url}/health/details`)).status).toBe(401);
    } finally {
      await app.close();
    }
  });

  it('ships a Grafana dashboard on Sophia\'s metrics and the Temporal SDK\'s', () => {
    const r = rendered.get('dashboards on, judges, every optional setting');
    if (!r) throw new Error(missingTools() ?? 'not rendered');
    const cm = r.manifests.find((m) => m.kind === 'ConfigMap')!;
    expect(cm.metadata.labels?.grafana_dashboard).toBe('1');
    const dashboard = JSON.parse(cm.data!['sophia.json']!) as { panels: { type: string; targets?: { expr: string }[] }[]; uid: string };
    expect(dashboard.uid).toBe('sophia-training');
    const exprs = dashboard.panels.flatMap((p) => (p.targets ?? []).map((t) => t.expr)).join('\n');
    const known = sophiaMetricNames();
    expect(known.length).toBeGreaterThan(10);
    for (const name of known) expect(exprs, `no panel shows ${name}`).toContain(name);
    // Every sophia_ series a panel asks for exists (histograms through their _bucket/_sum/_count).
    for (const [used] of exprs.matchAll(/\bsophia_[a-z0-9_]+/g)) expect(known).toContain(used.replace(/_(bucket|sum|count)$/, ''));
    expect(exprs).toMatch(/\btemporal_worker_task_slots_available\b/);
    expect(exprs).toMatch(/\btemporal_activity_schedule_to_start_latency_bucket\b/);
    // The file in the chart is the one shipped.
    expect(JSON.parse(readFileSync(path.join(CHART, 'dashboards', 'sophia.json'), 'utf8'))).toEqual(dashboard);
  });

  it('mounts the judges file and the API keys file from the Secrets named in values', () => {
    const r = rendered.get('dashboards on, judges, every optional setting');
    if (!r) throw new Error(missingTools() ?? 'not rendered');
    const cpu = workloads(r).find((m) => component(m) === 'worker-cpu')!;
    const spec = podSpec(cpu);
    expect(envOf(spec.containers[0]!).get('SOPHIA_JUDGES_FILE')!.value).toBe('/etc/sophia/judges/judges.yaml');
    expect(spec.volumes!.find((v) => v.name === 'judges')!.secret).toEqual({ secretName: 'sophia-judges', items: [{ key: 'judges.yaml', path: 'judges.yaml' }] });
    expect(spec.containers[0]!.envFrom).toEqual([{ secretRef: { name: 'sophia-judge-keys' } }]);
    const api = podSpec(workloads(r).find((m) => component(m) === 'api')!);
    expect(envOf(api.containers[0]!).get('SOPHIA_API_KEYS_FILE')!.value).toBe('/etc/sophia/api-keys/keys');
    expect(api.volumes!.find((v) => v.name === 'api-keys')!.secret!.secretName).toBe('sophia-api-keys');
  });
});
