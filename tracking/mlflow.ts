/**
 * The MLflow tracking server's REST API, as much as Sophia uses: experiments, runs, batched params and metrics,
 * artifacts through the server's artifact proxy (`mlflow server` serves them by default), and the model registry
 * (registered models, versions, aliases). Plain `fetch` with a timeout; no MLflow package is needed on workers.
 * Errors: `MlflowUnavailable` when the server cannot be reached or answers 5xx/429 (try again later),
 * `MlflowError` for what it refused (fix the request).
 */

export class MlflowError extends Error {
  constructor(
    message: string,
    readonly status: number,
    readonly code: string | undefined,
  ) {
    super(message);
    this.name = 'MlflowError';
  }
}

/** The server is down, unreachable or overloaded: the same request may work later. */
export class MlflowUnavailable extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'MlflowUnavailable';
  }
}

export interface MlflowMetric {
  key: string;
  value: number;
  /** Milliseconds since the epoch. */
  timestamp: number;
  step: number;
}

export interface MlflowModelVersion {
  name: string;
  version: string;
  source: string;
  run_id?: string;
  tags?: { key: string; value: string }[];
}

/** MLflow's limits per log-batch request. */
export const LOG_BATCH_LIMITS = { metrics: 1000, params: 100, total: 1000 } as const;
/** MLflow's longest param value. */
export const PARAM_VALUE_LIMIT = 6000;

export class MlflowClient {
  readonly uri: string;

  constructor(
    uri: string,
    private readonly timeoutMs = 10_000,
  ) {
    this.uri = uri.replace(/\/+$/, '');
  }

  private async request<T>(method: 'GET' | 'POST' | 'PUT', route: string, body?: unknown, raw?: Uint8Array): Promise<T> {
    let res: Response;
    try {
      res = await fetch(`${this.uri}${route}`, {
        method,
        signal: AbortSignal.timeout(this.timeoutMs),
        ...(raw !== undefined
          ? { headers: { 'content-type': 'application/octet-stream' }, body: raw }
          : body !== undefined
            ? { headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) }
            : {}),
      });
    } catch (err) {
      throw new MlflowUnavailable(`MLflow at ${this.uri} is unreachable: ${err instanceof Error ? err.message : String(err)}`, { cause: err });
    }
    const text = await res.text().catch(() => '');
    if (res.status >= 500 || res.status === 429) throw new MlflowUnavailable(`MLflow at ${this.uri}: ${method} ${route.split('?')[0]} answered ${res.status} ${text.slice(0, 300)}`);
    let json: { error_code?: string; message?: string } & Record<string, unknown> = {};
    try {
      json = text ? (JSON.parse(text) as typeof json) : {};
    } catch {
      json = {};
    }
    if (!res.ok) throw new MlflowError(`MLflow at ${this.uri}: ${method} ${route.split('?')[0]} refused (${res.status} ${json.error_code ?? ''}): ${json.message ?? text.slice(0, 300)}`, res.status, json.error_code);
    return json as T;
  }

  /** The experiment's id, creating it when missing. */
  async experimentId(name: string): Promise<string> {
    try {
      const found = await this.request<{ experiment: { experiment_id: string } }>('GET', `/api/2.0/mlflow/experiments/get-by-name?experiment_name=${encodeURIComponent(name)}`);
      return found.experiment.experiment_id;
    } catch (err) {
      if (!(err instanceof MlflowError && err.code === 'RESOURCE_DOES_NOT_EXIST')) throw err;
    }
    try {
      return (await this.request<{ experiment_id: string }>('POST', '/api/2.0/mlflow/experiments/create', { name })).experiment_id;
    } catch (err) {
      // Created by someone else in between.
      if (err instanceof MlflowError && err.code === 'RESOURCE_ALREADY_EXISTS') return this.experimentId(name);
      throw err;
    }
  }

  async createRun(experimentId: string, runName: string, tags: Record<string, string>, startTime: number): Promise<{ runId: string; artifactUri: string }> {
    const out = await this.request<{ run: { info: { run_id: string; artifact_uri: string } } }>('POST', '/api/2.0/mlflow/runs/create', {
      experiment_id: experimentId,
      run_name: runName,
      start_time: startTime,
      tags: Object.entries(tags).map(([key, value]) => ({ key, value })),
    });
    return { runId: out.run.info.run_id, artifactUri: out.run.info.artifact_uri };
  }

  async getRun(runId: string): Promise<{ info: { run_id: string; status: string; artifact_uri: string }; data: { params?: { key: string; value: string }[]; tags?: { key: string; value: string }[] } }> {
    return (await this.request<{ run: Awaited<ReturnType<MlflowClient['getRun']>> }>('GET', `/api/2.0/mlflow/runs/get?run_id=${encodeURIComponent(runId)}`)).run;
  }

  /** One log-batch request (within `LOG_BATCH_LIMITS`). */
  async logBatch(runId: string, batch: { metrics?: MlflowMetric[]; params?: { key: string; value: string }[]; tags?: { key: string; value: string }[] }): Promise<void> {
    await this.request('POST', '/api/2.0/mlflow/runs/log-batch', { run_id: runId, metrics: batch.metrics ?? [], params: batch.params ?? [], tags: batch.tags ?? [] });
  }

  async setTag(runId: string, key: string, value: string): Promise<void> {
    await this.request('POST', '/api/2.0/mlflow/runs/set-tag', { run_id: runId, key, value });
  }

  async endRun(runId: string, status: 'FINISHED' | 'FAILED' | 'KILLED', endTime: number): Promise<void> {
    await this.request('POST', '/api/2.0/mlflow/runs/update', { run_id: runId, status, end_time: endTime });
  }

  async metricHistory(runId: string, key: string): Promise<MlflowMetric[]> {
    const out = await this.request<{ metrics?: MlflowMetric[] }>('GET', `/api/2.0/mlflow/metrics/get-history?run_id=${encodeURIComponent(runId)}&metric_key=${encodeURIComponent(key)}&max_results=25000`);
    return out.metrics ?? [];
  }

  /**
   * Uploads a file into the run's artifacts through the server's proxy. `artifactUri` must be `mlflow-artifacts:/…`
   * (a server that serves artifacts, the default of `mlflow server`); anything else cannot be written over HTTP.
   */
  async uploadArtifact(artifactUri: string, relativePath: string, bytes: Uint8Array): Promise<void> {
    const m = /^mlflow-artifacts:(?:\/\/[^/]*)?\/(.*)$/.exec(artifactUri);
    if (!m) {
      throw new MlflowError(
        `the run's artifact location ${artifactUri} is not served by the tracking server, so Sophia cannot upload to it`,
        400,
        'INVALID_PARAMETER_VALUE',
      );
    }
    const route = `/api/2.0/mlflow-artifacts/artifacts/${[...m[1]!.split('/'), ...relativePath.split('/')].filter(Boolean).map(encodeURIComponent).join('/')}`;
    await this.request('PUT', route, undefined, bytes);
  }

  async listArtifacts(runId: string, relativePath = ''): Promise<{ path: string; is_dir?: boolean }[]> {
    const out = await this.request<{ files?: { path: string; is_dir?: boolean }[] }>('GET', `/api/2.0/mlflow/artifacts/list?run_id=${encodeURIComponent(runId)}&path=${encodeURIComponent(relativePath)}`);
    return out.files ?? [];
  }

  async createRegisteredModel(name: string, description: string): Promise<void> {
    try {
      await this.request('POST', '/api/2.0/mlflow/registered-models/create', { name, description });
    } catch (err) {
      if (!(err instanceof MlflowError && err.code === 'RESOURCE_ALREADY_EXISTS')) throw err;
    }
  }

  async searchModelVersions(name: string): Promise<MlflowModelVersion[]> {
    const filter = encodeURIComponent(`name='${name.replace(/'/g, "\\'")}'`);
    const out = await this.request<{ model_versions?: MlflowModelVersion[] }>('GET', `/api/2.0/mlflow/model-versions/search?filter=${filter}&max_results=10000`);
    return out.model_versions ?? [];
  }

  async createModelVersion(name: string, source: string, runId: string | undefined, tags: Record<string, string>, description: string): Promise<MlflowModelVersion> {
    const out = await this.request<{ model_version: MlflowModelVersion }>('POST', '/api/2.0/mlflow/model-versions/create', {
      name,
      source,
      ...(runId ? { run_id: runId } : {}),
      description,
      tags: Object.entries(tags).map(([key, value]) => ({ key, value })),
    });
    return out.model_version;
  }

  async setAlias(name: string, alias: string, version: string): Promise<void> {
    await this.request('POST', '/api/2.0/mlflow/registered-models/alias', { name, alias, version });
  }

  async versionByAlias(name: string, alias: string): Promise<MlflowModelVersion | undefined> {
    try {
      return (await this.request<{ model_version: MlflowModelVersion }>('GET', `/api/2.0/mlflow/registered-models/alias?name=${encodeURIComponent(name)}&alias=${encodeURIComponent(alias)}`)).model_version;
    } catch (err) {
      if (err instanceof MlflowError && (err.code === 'RESOURCE_DOES_NOT_EXIST' || err.code === 'INVALID_PARAMETER_VALUE' || err.status === 404)) return undefined;
      throw err;
    }
  }
}
