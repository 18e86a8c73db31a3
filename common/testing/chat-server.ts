/**
 * Test helper: a real local HTTP server implementing OpenAI's `POST /v1/chat/completions` on 127.0.0.1, for the
 * clients of common/openai-chat.ts (the LLM judge, the benchmark answer extractor). Each test decides the replies
 * and reads back what was received; `stopChatServers` (in `afterEach`) closes every server started.
 */
import { type IncomingMessage, type Server, createServer } from 'node:http';
import type { AddressInfo } from 'node:net';

export interface Received {
  path: string;
  authorization: string | undefined;
  body: { model: string; temperature: number; messages: { role: string; content: unknown }[] };
}

export interface Reply {
  status: number;
  body: string;
  headers?: Record<string, string>;
  delayMs?: number;
}

/** A chat completion whose message is `text`. */
export const completion = (text: string): Reply => ({ status: 200, body: JSON.stringify({ choices: [{ index: 0, message: { role: 'assistant', content: text } }] }) });

let servers: Server[] = [];

/** Stops every server started by `serveChat`. */
export async function stopChatServers(): Promise<void> {
  const all = servers;
  servers = [];
  await Promise.all(
    all.map((s) => {
      s.closeAllConnections();
      return new Promise<void>((resolve) => s.close(() => resolve()));
    }),
  );
}

/** Starts a chat-completions server on a free port; `reply` answers the n-th request (0-based). */
export async function serveChat(reply: (req: Received, n: number) => Reply) {
  const received: Received[] = [];
  const stats = { inFlight: 0, maxInFlight: 0 };
  const server = createServer((req: IncomingMessage, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const r: Received = { path: req.url ?? '', authorization: req.headers.authorization, body: JSON.parse(Buffer.concat(chunks).toString('utf8')) as Received['body'] };
      const n = received.push(r) - 1;
      stats.inFlight++;
      stats.maxInFlight = Math.max(stats.maxInFlight, stats.inFlight);
      const out = reply(r, n);
      setTimeout(() => {
        stats.inFlight--;
        res.writeHead(out.status, { 'content-type': 'application/json', ...out.headers });
        res.end(out.body);
      }, out.delayMs ?? 0);
    });
  });
  servers.push(server);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return { baseUrl: `http://127.0.0.1:${port}/v1`, received, stats };
}
