/**
 * Request counters and latency sums for `GET /metrics` (Prometheus text format), filled by a middleware.
 * Routes are recorded by their pattern (`/runs/:id`), never by the raw URL, so ids don't explode the series.
 */
import { Injectable } from '@nestjs/common';

interface Series {
  count: number;
  seconds: number;
}

@Injectable()
export class RequestMetrics {
  private readonly series = new Map<string, Series>();
  readonly startedAt = Date.now();

  record(method: string, route: string, status: number, seconds: number): void {
    const key = `method="${method}",route="${route.replace(/["\\\n]/g, '_')}",status="${status}"`;
    const s = this.series.get(key) ?? { count: 0, seconds: 0 };
    s.count += 1;
    s.seconds += seconds;
    this.series.set(key, s);
  }

  /** Lines of the exposition format for the request series. */
  lines(): string[] {
    const out = [
      '# HELP sophia_api_requests_total HTTP requests handled, by method, route pattern and status.',
      '# TYPE sophia_api_requests_total counter',
    ];
    for (const [labels, s] of this.series) out.push(`sophia_api_requests_total{${labels}} ${s.count}`);
    out.push('# HELP sophia_api_request_seconds_sum Total time spent handling requests.', '# TYPE sophia_api_request_seconds_sum counter');
    for (const [labels, s] of this.series) out.push(`sophia_api_request_seconds_sum{${labels}} ${s.seconds.toFixed(6)}`);
    return out;
  }
}
