import { trace } from '@opentelemetry/api';
import { InMemorySpanExporter, SimpleSpanProcessor } from '@opentelemetry/sdk-trace-base';
import { afterEach, describe, expect, it } from 'vitest';
import { currentTraceId, inSpan, startTracing, stopTracing, tracedMethods, tracingConfigured } from './tracing';

describe('tracing configuration', () => {
  it('traces only when an OTLP endpoint is set and tracing is not switched off', () => {
    expect(tracingConfigured({})).toBe(false);
    expect(tracingConfigured({ OTEL_EXPORTER_OTLP_ENDPOINT: 'http://jaeger:4318' })).toBe(true);
    expect(tracingConfigured({ OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: 'https://otlp.example.com/v1/traces' })).toBe(true);
    expect(tracingConfigured({ OTEL_EXPORTER_OTLP_ENDPOINT: 'http://jaeger:4318', OTEL_SDK_DISABLED: 'true' })).toBe(false);
    expect(tracingConfigured({ OTEL_EXPORTER_OTLP_ENDPOINT: 'http://jaeger:4318', OTEL_TRACES_EXPORTER: 'none' })).toBe(false);
    expect(tracingConfigured({ OTEL_EXPORTER_OTLP_ENDPOINT: '  ' })).toBe(false);
  });

  it('refuses a malformed endpoint by name instead of silently not tracing', () => {
    expect(() => tracingConfigured({ OTEL_EXPORTER_OTLP_ENDPOINT: 'jaeger:4318' })).toThrow(/OTEL_EXPORTER_OTLP_ENDPOINT: "jaeger:4318": Sophia exports OTLP over HTTP/);
    expect(() => tracingConfigured({ OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: 'not a url' })).toThrow(/OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: "not a url" is not a URL/);
  });

  it('starts nothing without an endpoint', () => {
    expect(startTracing('sophia-test', {})).toBeUndefined();
  });
});

describe('spans of engine calls and of Sophia’s own steps', () => {
  const exporter = new InMemorySpanExporter();
  afterEach(async () => {
    await stopTracing();
    exporter.reset();
  });

  it('without tracing, tracedMethods returns the object itself and inSpan just runs', async () => {
    const engine = { generate: () => Promise.resolve(1) };
    expect(tracedMethods(engine, 'engine', {})).toBe(engine);
    await expect(inSpan('x', {}, () => Promise.resolve(2))).resolves.toBe(2);
  });

  it('wraps each async method in a child span of the caller, records failures, and leaves sync methods alone', async () => {
    const tracing = startTracing('sophia-test', {}, { processor: new SimpleSpanProcessor(exporter) })!;
    expect(tracing.service).toBe('sophia-test');
    const tracer = trace.getTracer('test');
    class Engine {
      calls = 0;
      step() {
        return this.calls;
      }
      generate(n: number): Promise<number> {
        this.calls += n;
        return Promise.resolve(this.step());
      }
      fail(): Promise<never> {
        return Promise.reject(new Error('out of memory'));
      }
    }
    const raw = new Engine();
    const engine = tracedMethods(raw, 'engine', { 'sophia.engine.kind': 'onnx' });
    let traceId: string | undefined;
    await tracer.startActiveSpan('RunActivity:rolloutStep', async (parent) => {
      traceId = currentTraceId();
      expect(await engine.generate(3)).toBe(3);
      expect(engine.step()).toBe(3);
      await expect(engine.fail()).rejects.toThrow('out of memory');
      await inSpan('sophia step', { n: 1 }, () => Promise.resolve());
      parent.end();
    });
    expect(raw.calls).toBe(3);
    const spans = exporter.getFinishedSpans();
    expect(spans.map((s) => s.name).sort()).toEqual(['RunActivity:rolloutStep', 'engine.fail', 'engine.generate', 'sophia step']);
    const parent = spans.find((s) => s.name === 'RunActivity:rolloutStep')!;
    for (const s of spans.filter((x) => x !== parent)) {
      expect(s.parentSpanId).toBe(parent.spanContext().spanId);
      expect(s.spanContext().traceId).toBe(traceId);
    }
    expect(spans.find((s) => s.name === 'engine.generate')!.attributes).toEqual({ 'sophia.engine.kind': 'onnx' });
    const failed = spans.find((s) => s.name === 'engine.fail')!;
    expect(failed.status).toMatchObject({ code: 2, message: 'out of memory' });
    expect(failed.events.map((e) => e.name)).toEqual(['exception']);
  });
});
