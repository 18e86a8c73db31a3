/**
 * OpenTelemetry traces, exported over OTLP (HTTP, protobuf) when `OTEL_EXPORTER_OTLP_ENDPOINT` or
 * `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` is set; nothing is traced otherwise. The exporter reads the standard
 * variables itself (`OTEL_EXPORTER_OTLP_HEADERS`, `…_TIMEOUT`, `OTEL_SERVICE_NAME`, `OTEL_RESOURCE_ATTRIBUTES`);
 * `OTEL_SDK_DISABLED=true` or `OTEL_TRACES_EXPORTER=none` turn it off.
 *
 * One trace per run: the API request (or `sophia run`) that starts it is the root; Temporal's interceptors carry
 * the context in workflow and activity headers, so the pipeline workflow, each stage's child workflow, every
 * activity and every engine call the activity makes are spans of that trace, whichever process runs them.
 *
 *   POST /runs → StartWorkflow:pipeline → RunWorkflow:pipeline → StartChildWorkflowExecution:sftStage
 *     → RunWorkflow:sftStage → StartActivity:sftTrainChunk → RunActivity:sftTrainChunk → engine.trainStepResponses …
 *
 * Log lines carry the trace id (observability/log.ts reads what the interceptors put on them).
 */
import { hostname } from 'node:os';
import { type Attributes, type Context, SpanKind, SpanStatusCode, context, propagation, trace } from '@opentelemetry/api';
import { OTLPTraceExporter } from '@opentelemetry/exporter-trace-otlp-proto';
import { Resource, envDetectorSync } from '@opentelemetry/resources';
import { BatchSpanProcessor, type SpanProcessor } from '@opentelemetry/sdk-trace-base';
import { NodeTracerProvider } from '@opentelemetry/sdk-trace-node';
import type { ClientInterceptors } from '@temporalio/client';
import {
  OpenTelemetryActivityInboundInterceptor,
  OpenTelemetryActivityOutboundInterceptor,
  OpenTelemetryWorkflowClientInterceptor,
  makeWorkflowExporter,
} from '@temporalio/interceptors-opentelemetry';
import type { WorkerOptions } from '@temporalio/worker';
import { ConfigError } from '../common/errors';

type Env = Readonly<Record<string, string | undefined>>;

/** The instrumentation scope of Sophia's own spans. */
export const TRACER_NAME = 'sophia';

const ENDPOINT_VARIABLES = ['OTEL_EXPORTER_OTLP_TRACES_ENDPOINT', 'OTEL_EXPORTER_OTLP_ENDPOINT'] as const;

/**
 * Whether this process exports traces, from the environment: an OTLP endpoint is set (and is an http(s) URL) and
 * tracing is not switched off. A malformed endpoint is refused by name rather than silently not traced.
 */
export function tracingConfigured(env: Env): boolean {
  if (env.OTEL_SDK_DISABLED?.trim().toLowerCase() === 'true') return false;
  if (env.OTEL_TRACES_EXPORTER?.trim().toLowerCase() === 'none') return false;
  let configured = false;
  for (const name of ENDPOINT_VARIABLES) {
    const raw = env[name]?.trim();
    if (!raw) continue;
    let url: URL;
    try {
      url = new URL(raw);
    } catch {
      throw new ConfigError(name, `${JSON.stringify(raw)} is not a URL`, { hint: 'Give the OTLP/HTTP endpoint of a trace backend, e.g. http://jaeger:4318' });
    }
    if (url.protocol !== 'http:' && url.protocol !== 'https:') {
      throw new ConfigError(name, `${JSON.stringify(raw)}: Sophia exports OTLP over HTTP, not ${url.protocol.replace(/:$/, '')}`, { hint: 'Give the OTLP/HTTP endpoint (port 4318 on Jaeger and the Collector), e.g. http://jaeger:4318' });
    }
    configured = true;
  }
  return configured;
}

export interface Tracing {
  readonly service: string;
  readonly resource: Resource;
  readonly processor: SpanProcessor;
  /** Exports what is buffered. */
  flush(): Promise<void>;
}

let active: { tracing: Tracing; provider: NodeTracerProvider } | undefined;

/**
 * Starts exporting this process's spans as `service` (unless `OTEL_SERVICE_NAME` names it) when the environment
 * configures an endpoint; once per process (later calls return the first). Returns undefined when not configured.
 * `options.processor`: where spans go instead of the OTLP exporter (tests).
 */
export function startTracing(service: string, env: Env = process.env, options: { processor?: SpanProcessor } = {}): Tracing | undefined {
  if (active) return active.tracing;
  if (!options.processor && !tracingConfigured(env)) return undefined;
  const resource = Resource.default()
    .merge(new Resource({ 'service.name': service, 'service.instance.id': `${hostname()}-${process.pid}`, 'service.namespace': 'sophia' }))
    .merge(envDetectorSync.detect());
  const processor = options.processor ?? new BatchSpanProcessor(new OTLPTraceExporter(), { scheduledDelayMillis: 1000 });
  const provider = new NodeTracerProvider({ resource, spanProcessors: [processor] });
  // The global provider, the AsyncLocalStorage context manager and the W3C trace-context propagator.
  provider.register();
  const tracing: Tracing = { service: String(resource.attributes['service.name']), resource, processor, flush: () => provider.forceFlush() };
  active = { tracing, provider };
  return tracing;
}

/** Exports what is buffered and stops (a process calls this before it exits). */
export async function stopTracing(): Promise<void> {
  const current = active;
  active = undefined;
  if (!current) return;
  await current.provider.forceFlush().catch(() => undefined);
  await current.provider.shutdown().catch(() => undefined);
  trace.disable();
  context.disable();
  propagation.disable();
}

/** The tracing this process started, if any. */
export const activeTracing = (): Tracing | undefined => active?.tracing;

/** A Temporal client's interceptors: workflow starts, signals and queries carry the caller's trace context. */
export function clientInterceptors(): ClientInterceptors | undefined {
  return active ? { workflow: [new OpenTelemetryWorkflowClientInterceptor()] } : undefined;
}

/**
 * What a worker adds to its options when tracing: spans for workflow runs (exported through a sink, as workflow
 * code cannot do I/O), child workflows and activities, and the trace id on their log lines. The workflow
 * interceptors are bundled with the workflows, so a worker given a prebuilt bundle must have built it with
 * `WORKFLOW_TRACING_MODULES`.
 */
export function workerTracing(): Pick<WorkerOptions, 'interceptors' | 'sinks'> {
  if (!active) return {};
  const { processor, resource } = active.tracing;
  return {
    interceptors: {
      workflowModules: WORKFLOW_TRACING_MODULES,
      activity: [(ctx) => ({ inbound: new OpenTelemetryActivityInboundInterceptor(ctx), outbound: new OpenTelemetryActivityOutboundInterceptor(ctx) })],
    },
    sinks: { exporter: makeWorkflowExporter(processor, resource) },
  };
}

/** The workflow interceptor modules of tracing (for `bundleWorkflowCode({ workflowInterceptorModules })`). */
export const WORKFLOW_TRACING_MODULES: string[] = [require.resolve('@temporalio/interceptors-opentelemetry/lib/workflow-interceptors')];

/** The workflow interceptor modules a bundle built now needs: tracing's when this process traces, else none. */
export function workflowInterceptorModules(): readonly string[] {
  return active ? WORKFLOW_TRACING_MODULES : [];
}

/** The id of the trace the caller is in, if any. */
export function currentTraceId(): string | undefined {
  const span = trace.getActiveSpan();
  const ctx = span?.spanContext();
  return ctx && trace.isSpanContextValid(ctx) ? ctx.traceId : undefined;
}

/**
 * Runs `fn` in a span named `name` (a child of the active span, or of `parent`), which ends when `fn` settles and
 * records its error. Without tracing the global tracer is a no-op and this is just `fn()`.
 */
export async function inSpan<T>(name: string, attributes: Attributes, fn: () => Promise<T>, options: { kind?: SpanKind; parent?: Context } = {}): Promise<T> {
  const tracer = trace.getTracer(TRACER_NAME);
  return tracer.startActiveSpan(name, { attributes, kind: options.kind ?? SpanKind.INTERNAL }, options.parent ?? context.active(), async (span) => {
    try {
      return await fn();
    } catch (err) {
      span.recordException(err as Error);
      span.setStatus({ code: SpanStatusCode.ERROR, message: err instanceof Error ? err.message : String(err) });
      throw err;
    } finally {
      span.end();
    }
  });
}

/**
 * `target` with every method that returns a promise wrapped in a span `{prefix}.{method}` (the engine calls of an
 * activity). Without tracing, `target` itself.
 */
export function tracedMethods<T extends object>(target: T, prefix: string, attributes: Attributes): T {
  if (!active) return target;
  return new Proxy(target, {
    get(obj, key, receiver) {
      const value: unknown = Reflect.get(obj, key, receiver);
      if (typeof value !== 'function' || typeof key !== 'string') return value;
      return function (this: unknown, ...args: unknown[]) {
        const span = trace.getTracer(TRACER_NAME).startSpan(`${prefix}.${key}`, { attributes });
        // A method that returns no promise (config(), step()) gets no span: one never ended is never exported.
        const result: unknown = (value as (...a: unknown[]) => unknown).apply(this === receiver ? obj : this, args);
        if (!(result instanceof Promise)) return result;
        return (result as Promise<unknown>).then(
          (v: unknown) => {
            span.end();
            return v;
          },
          (err: unknown) => {
            span.recordException(err as Error);
            span.setStatus({ code: SpanStatusCode.ERROR, message: err instanceof Error ? err.message : String(err) });
            span.end();
            throw err;
          },
        );
      };
    },
  });
}

/**
 * A server span for an incoming HTTP request, a child of the caller's trace when its headers carry one (W3C
 * `traceparent`). Run the handler in `context`; `finish` names the span by the matched route and ends it.
 * Without tracing, undefined.
 */
export function startServerSpan(method: string, path: string, headers: Record<string, string | string[] | undefined>): { context: Context; finish(route: string | undefined, status: number): void } | undefined {
  if (!active) return undefined;
  const parent = propagation.extract(context.active(), headers);
  const span = trace.getTracer(TRACER_NAME).startSpan(method, { kind: SpanKind.SERVER, attributes: { 'http.request.method': method, 'url.path': path } }, parent);
  return {
    context: trace.setSpan(parent, span),
    finish(route, status) {
      if (route) {
        span.updateName(`${method} ${route}`);
        span.setAttribute('http.route', route);
      }
      span.setAttribute('http.response.status_code', status);
      if (status >= 500) span.setStatus({ code: SpanStatusCode.ERROR });
      span.end();
    },
  };
}
