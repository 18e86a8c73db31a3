/**
 * A run's Server-Sent Events stream: polls the run's detail and metrics.jsonl and sends
 *   event: progress   data: RunDetail            (when it changed)
 *   event: metrics    data: { records, total }   (new records; `id:` is the count sent so far, so a client that
 *                                                reconnects with Last-Event-ID gets only what it missed)
 *   event: end        data: RunDetail            (the run closed; the stream ends)
 * and a comment every 15 s so proxies keep the connection open. Stops polling when the client goes away.
 */
import type { Request, Response } from 'express';
import type { RunsService } from './runs.service';

const KEEPALIVE_MS = 15_000;

export async function streamRunEvents(runs: RunsService, runId: string, req: Request, res: Response, options: { pollMs: number; sentMetrics: number }): Promise<void> {
  res.status(200);
  res.setHeader('Content-Type', 'text/event-stream; charset=utf-8');
  res.setHeader('Cache-Control', 'no-cache, no-transform');
  res.setHeader('Connection', 'keep-alive');
  res.setHeader('X-Accel-Buffering', 'no');
  res.flushHeaders();
  let open = true;
  let wake: (() => void) | undefined;
  req.on('close', () => {
    open = false;
    wake?.(); // end the current wait at once
  });
  const send = (event: string, data: unknown, id?: number) => {
    if (open) res.write(`${id !== undefined ? `id: ${id}\n` : ''}event: ${event}\ndata: ${JSON.stringify(data)}\n\n`);
  };
  let sent = options.sentMetrics;
  let lastProgress = '';
  let lastWrite = Date.now();
  while (open) {
    try {
      const detail = await runs.detail(runId);
      const records = await runs.readMetrics(runId);
      if (records.length < sent) sent = 0; // rewritten (a retried step): send everything again
      if (records.length > sent) {
        send('metrics', { records: records.slice(sent), total: records.length }, records.length);
        sent = records.length;
        lastWrite = Date.now();
      }
      const progress = JSON.stringify(detail);
      if (progress !== lastProgress) {
        send('progress', detail);
        lastProgress = progress;
        lastWrite = Date.now();
      }
      if (detail.status !== 'running') {
        send('end', detail);
        break;
      }
    } catch (err) {
      send('warning', { message: err instanceof Error ? err.message : String(err) });
    }
    if (Date.now() - lastWrite > KEEPALIVE_MS && open) {
      res.write(': keep-alive\n\n');
      lastWrite = Date.now();
    }
    await new Promise<void>((resolve) => {
      wake = resolve;
      setTimeout(resolve, options.pollMs);
    });
  }
  res.end();
}
