/**
 * infra/compose/compose.yaml without Docker: it parses (YAML with the merge keys Compose supports), the Sophia
 * containers set only environment variables the code reads and values the code accepts, services start in an order
 * that works (PostgreSQL → schema → Temporal → namespace; S3 → bucket; then the API and the workers), the GPU worker
 * reserves a GPU, workers get longer to stop than SOPHIA_SHUTDOWN_GRACE, and no secret is written in the file.
 */
import { existsSync, readFileSync } from 'node:fs';
import * as path from 'node:path';
import { parse } from 'yaml';
import { describe, expect, it } from 'vitest';
import { parseDurationMs } from '../../common/duration';
import { codeTokens } from '../testing/code-tokens';
import { logFormat } from '../../observability/log';
import { metricsPort } from '../../observability/serve';
import { s3OptionsFromEnv } from '../../storage/open';
import { loadTemporalConfig } from '../../temporal.config';

const ROOT = path.resolve(__dirname, '..', '..');
const DIR = path.join(ROOT, 'infra', 'compose');
const FILE = path.join(DIR, 'compose.yaml');

interface Service {
  image?: string;
  build?: { context: string; dockerfile: string; target?: string };
  command?: string[] | string;
  entrypoint?: string[] | string;
  environment?: Record<string, string | number | boolean | null>;
  depends_on?: Record<string, { condition: string }>;
  healthcheck?: { test: string[] };
  secrets?: string[];
  volumes?: string[];
  stop_grace_period?: string;
  init?: boolean;
  deploy?: { resources?: { reservations?: { devices?: { driver?: string; device_ids?: string[]; count?: number | string; capabilities?: string[] }[] } } };
}
interface Compose {
  services: Record<string, Service>;
  secrets?: Record<string, { file: string }>;
  volumes?: Record<string, unknown>;
}

const compose = parse(readFileSync(FILE, 'utf8'), { merge: true }) as Compose;
const services = compose.services;
/** Services that run the Sophia image. */
const sophia = Object.entries(services).filter(([, s]) => s.build?.dockerfile === 'infra/docker/Dockerfile');

/** `${VAR:-default}` → default (what Compose substitutes with an empty .env), `${VAR:?msg}` → a stand-in, `$$` → `$`. */
function interpolate(value: string): string {
  return value
    .replace(/\$\{([A-Z0-9_]+):-([^}]*)\}/g, (_m, _name: string, def: string) => def)
    .replace(/\$\{([A-Z0-9_]+)(?::\?[^}]*)?\}/g, 'from-env-0123456789abcdef')
    .replace(/\$\$/g, '$');
}
function envOf(s: Service): Record<string, string> {
  return Object.fromEntries(Object.entries(s.environment ?? {}).map(([k, v]) => [k, interpolate(String(v))]));
}


/** Every service `name` waits for, directly or not. */
function dependenciesOf(name: string, seen = new Set<string>()): Set<string> {
  for (const dep of Object.keys(services[name]?.depends_on ?? {})) {
    if (!seen.has(dep)) {
      seen.add(dep);
      dependenciesOf(dep, seen);
    }
  }
  return seen;
}

describe('compose file infra/compose/compose.yaml', () => {
  it('has the single-host stack', () => {
    expect(Object.keys(services).sort()).toEqual(
      ['api', 'postgresql', 's3', 's3-bucket', 'temporal', 'temporal-namespace', 'temporal-schema', 'temporal-ui', 'worker-cpu', 'worker-gpu'].sort(),
    );
    expect(sophia.map(([n]) => n).sort()).toEqual(['api', 's3-bucket', 'worker-cpu', 'worker-gpu']);
    expect(services.api!.command).toEqual(['api']);
    expect(services['worker-cpu']!.command).toEqual(['worker', '--queue', 'cpu']);
    expect(services['worker-gpu']!.command).toEqual(['worker', '--queue', 'gpu']);
  });

  it('builds the Sophia services from the Dockerfile\'s stages', () => {
    const dockerfile = readFileSync(path.join(ROOT, 'infra', 'docker', 'Dockerfile'), 'utf8');
    const stages = new Set([...dockerfile.matchAll(/^FROM \S+ AS (\S+)$/gm)].map((m) => m[1]));
    for (const [name, s] of sophia) {
      expect(path.resolve(DIR, s.build!.context)).toBe(ROOT);
      expect(stages, name).toContain(s.build!.target);
      expect(s.build!.target).toBe(name === 'worker-gpu' ? 'gpu' : 'runtime');
    }
    // The bucket job runs a script the image holds (the Dockerfile copies the repository).
    const entry = services['s3-bucket']!.entrypoint as string[];
    expect(entry[0]).toBe('node');
    expect(existsSync(path.join(ROOT, entry[1]!))).toBe(true);
  });

  it('sets only environment variables the code reads, with values it accepts', () => {
    const tokens = codeTokens(ROOT);
    for (const [name, s] of sophia) {
      const env = envOf(s);
      for (const key of Object.keys(env)) expect(tokens.has(key), `${name} sets ${key}, which no .ts file outside tests reads`).toBe(true);
      const temporal = loadTemporalConfig(env);
      const [host, port] = temporal.connection.address.split(':');
      expect(services[host!], `TEMPORAL_ADDRESS names service ${host}`).toBeDefined();
      expect(port).toBe('7233');
      const bucket = /^s3:\/\/([^/]+)\/?(.*)$/.exec(env.SOPHIA_STORAGE!);
      expect(bucket).not.toBeNull();
      const s3 = s3OptionsFromEnv(bucket![1]!, bucket![2]!, env);
      expect(services[new URL(s3.endpoint!).hostname], 'SOPHIA_S3_ENDPOINT names a service').toBeDefined();
      logFormat(env);
    }
  });

  it('wires the workers: metrics port, health checks, shutdown grace, GPU reservation', () => {
    for (const name of ['worker-cpu', 'worker-gpu']) {
      const s = services[name]!;
      const env = envOf(s);
      const port = metricsPort(env);
      expect(port).toBe(9464);
      expect(s.healthcheck!.test.join(' ')).toContain(`127.0.0.1:${port}/health`);
      const grace = parseDurationMs(env.SOPHIA_SHUTDOWN_GRACE!)!;
      expect(loadTemporalConfig(env).workers.cpu.shutdownGraceTimeMs).toBe(grace);
      expect(parseDurationMs(s.stop_grace_period!)!).toBeGreaterThan(grace);
      expect(s.init).toBe(true);
    }
    const devices = services['worker-gpu']!.deploy!.resources!.reservations!.devices!;
    expect(devices).toHaveLength(1);
    expect(devices[0]!.driver).toBe('nvidia');
    expect(devices[0]!.capabilities).toContain('gpu');
    expect(devices[0]!.device_ids).toHaveLength(1);
    expect(envOf(services['worker-gpu']!).SOPHIA_TORCH_PROFILE).toBe('gpu');
    expect(services['worker-cpu']!.deploy).toBeUndefined();
    expect(services.api!.healthcheck!.test.join(' ')).toContain(`127.0.0.1:${envOf(services.api!).SOPHIA_API_PORT}/health`);
  });

  it('starts services in an order that works', () => {
    for (const [name, s] of Object.entries(services)) {
      for (const [dep, { condition }] of Object.entries(s.depends_on ?? {})) {
        const target = services[dep];
        expect(target, `${name} depends on ${dep}, which is not a service`).toBeDefined();
        // One-shot jobs are waited for to finish; long-running services to be healthy, when they say so.
        const oneShot = ['temporal-schema', 'temporal-namespace', 's3-bucket'].includes(dep);
        expect(condition, `${name} → ${dep}`).toBe(oneShot ? 'service_completed_successfully' : target!.healthcheck ? 'service_healthy' : 'service_started');
      }
      expect(dependenciesOf(name).has(name), `${name} depends on itself`).toBe(false);
    }
    expect([...dependenciesOf('temporal')]).toEqual(expect.arrayContaining(['temporal-schema', 'postgresql']));
    for (const name of ['api', 'worker-cpu', 'worker-gpu']) {
      expect([...dependenciesOf(name)], name).toEqual(expect.arrayContaining(['temporal', 'temporal-namespace', 'postgresql', 's3', 's3-bucket']));
    }
  });

  it('writes no secret in the file: the keys file is a Compose secret, passwords come from .env', () => {
    const api = services.api!;
    const keysFile = envOf(api).SOPHIA_API_KEYS_FILE!;
    const secret = /^\/run\/secrets\/(.+)$/.exec(keysFile)![1]!;
    expect(api.secrets).toContain(secret);
    expect(compose.secrets![secret]!.file).toMatch(/^\.\/secrets\//);
    for (const [name, s] of Object.entries(services)) {
      for (const [key, value] of Object.entries(s.environment ?? {})) {
        if (/KEY|SECRET|TOKEN|PASSWORD|PWD/.test(key) && !/_FILE$/.test(key)) {
          expect(String(value), `${name}: ${key} is a literal`).toMatch(/^\$\{[A-Z0-9_]+(:\?[^}]*)?\}$/);
        }
      }
    }
    // .env and the secrets folder stay out of the image's build context.
    const ignore = readFileSync(path.join(ROOT, 'infra', 'docker', 'Dockerfile.dockerignore'), 'utf8').split('\n');
    expect(ignore).toEqual(expect.arrayContaining(['infra/compose/.env', 'infra/compose/secrets']));
    // env.example names every variable the file requires.
    const example = readFileSync(path.join(DIR, 'env.example'), 'utf8');
    const required = new Set([...readFileSync(FILE, 'utf8').matchAll(/\$\{([A-Z0-9_]+):\?/g)].map((m) => m[1]!));
    for (const name of required) expect(example).toMatch(new RegExp(`^${name}=`, 'm'));
  });
});
