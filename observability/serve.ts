/**
 * A worker process's `/metrics` endpoint (Prometheus text format): Sophia's and Node's metrics (`metrics.ts`), then
 * the Temporal SDK runtime's (its Rust core serves them on a private loopback port, `temporalMetricsAddress`, which
 * the runtime is installed with when `SOPHIA_METRICS_PORT` is set), so one scrape target has both. `/health` answers
 * 200 for probes.
 *
 *   SOPHIA_METRICS_PORT=9464 sophia worker --queue gpu     → http://HOST:9464/metrics
 *   SOPHIA_METRICS_HOST (default 0.0.0.0)                   the address to listen on
 */
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { createServer as createNetServer } from 'node:net';
import { ConfigError } from '../common/errors';
import { registry } from './metrics';

type Env = Readonly<Record<string, string | undefined>>;

/** `SOPHIA_METRICS_PORT` (1–65535), or undefined when unset: no endpoint. Throws a `ConfigError` naming the variable. */
export function metricsPort(env: Env): number | undefined {
  const raw = env.SOPHIA_METRICS_PORT?.trim();
  if (!raw) return undefined;
  const port = Number(raw);
  if (!Number.isInteger(port) || port < 1 || port > 65535) {
    throw new ConfigError('SOPHIA_METRICS_PORT', `${JSON.stringify(raw)} is not a TCP port`, { hint: 'Give a port from 1 to 65535 (9464 is the usual one for a Prometheus exporter), or unset it' });
  }
  return port;
}

/** A free loopback port for the Temporal runtime's own Prometheus exporter (asked of the OS, then released). */
export async function freeLoopbackPort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const probe = createNetServer();
    probe.once('error', reject);
    probe.listen(0, '127.0.0.1', () => {
      const { port } = probe.address() as AddressInfo;
      probe.close(() => resolve(port));
    });
  });
}

/** Where this process's Temporal runtime serves its metrics (set when the runtime is installed with them). */
let temporalMetrics: string | undefined;
export function setTemporalMetricsAddress(address: string | undefined): void {
  temporalMetrics = address;
}

export interface MetricsServer {
  url: string;
  close(): Promise<void>;
}

async function temporalText(): Promise<string> {
  if (!temporalMetrics) return '';
  try {
    const res = await fetch(`http://${temporalMetrics}/metrics`, { signal: AbortSignal.timeout(2000) });
    return res.ok ? await res.text() : `# temporal runtime metrics unavailable: HTTP ${res.status}\n`;
  } catch (err) {
    return `# temporal runtime metrics unavailable: ${err instanceof Error ? err.message : String(err)}\n`;
  }
}

export async function serveMetrics(options: { port: number; host?: string }): Promise<MetricsServer> {
  const server: Server = createServer((req, res) => {
    const path = (req.url ?? '/').split('?')[0];
    if (req.method === 'GET' && path === '/metrics') {
      Promise.all([registry.metrics(), temporalText()])
        .then(([own, temporal]) => {
          res.writeHead(200, { 'content-type': registry.contentType });
          res.end(`${own}\n${temporal}`);
        })
        .catch((err: unknown) => {
          res.writeHead(500, { 'content-type': 'text/plain' });
          res.end(`metrics failed: ${err instanceof Error ? err.message : String(err)}\n`);
        });
      return;
    }
    if (req.method === 'GET' && path === '/health') {
      res.writeHead(200, { 'content-type': 'text/plain' });
      res.end('ok\n');
      return;
    }
    res.writeHead(404, { 'content-type': 'text/plain' });
    res.end('not found: GET /metrics or /health\n');
  });
  const host = options.host ?? '0.0.0.0';
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.port, host, () => resolve());
  });
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://${host === '0.0.0.0' ? '127.0.0.1' : host}:${port}/metrics`,
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}
