import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { ConfigError, SophiaError } from '../common/errors';
import { completion, serveChat, stopChatServers } from '../common/testing/chat-server';
import { generateExample } from '../tasks/dataset';
import type { AnnotationRequest } from './annotator';
import { JUDGE_RUBRIC } from './judge';
import { judgeAnnotator } from './judges';
import { OpenAiCompatibleAnnotator, parseJudgeScore } from './llm-annotator';

describe('parseJudgeScore', () => {
  it.each([
    ['<answer>0.7</answer>', 0.7],
    ['The steps are right but one is repeated.\n<answer> 0.9 </answer>', 0.9],
    ['<answer>7/10</answer>', 0.7],
    ['<answer>0.7</answer> (score 0.2 if strict)', 0.7],
    ['<answer>1.3</answer>', 1],
    ['<answer>-0.2</answer>', 0],
    ['<answer>0.65</answer>', 0.7],
    ['<answer>0.62</answer>', 0.6],
    ['Score: 0.6', 0.6],
    ['I would give it a score of 0.4. It has 2 errors in 3 steps.', 0.4],
    ['First score 0.2, on reflection the score is 0.5', 0.5],
    ['The final score is 80%', 0.8],
    ['<answer>good</answer> overall score: 0.3', 0.3],
    ['0.4', 0.4],
    ['  1. ', 1],
    ['7/10', 0.7],
    ['I rate it 7 out of 10', 0.7],
    ['about 70% of the reasoning holds', 0.7],
    ['no idea', null],
    ['', null],
    ['<answer></answer>', null],
    ['The reasoning has 2 errors', null],
  ])('%j → %s', (text, score) => {
    expect(parseJudgeScore(text)).toBe(score);
  });
});

// ---------------------------------------------------------------------------------------------------------------
// The client against a real local HTTP server implementing chat/completions
// ---------------------------------------------------------------------------------------------------------------

afterEach(stopChatServers);

const example = generateExample('counting', 'train', 0, 24, 1);
const request = (response: string): AnnotationRequest => ({ example, response });
const fast = { retryDelayMs: 1, timeoutMs: 5000 };

describe('OpenAiCompatibleAnnotator', () => {
  it('sends the model, the rubric, the question, the response and the image, with the key as a bearer token', async () => {
    const { baseUrl, received } = await serveChat(() => completion('The counts are right. <answer>0.8</answer>'));
    const annotator = new OpenAiCompatibleAnnotator({ baseUrl: `${baseUrl}/`, model: 'judge-vl', apiKey: 'sk-test-123', ...fast });
    const annotations = await annotator.annotate([request('<think>a</think><answer>1</answer>'), request('<think>b</think><answer>2</answer>')]);

    expect(annotator.name).toBe('llm:judge-vl');
    expect(annotations).toEqual([
      { score: 0.8, raw: 'The counts are right. <answer>0.8</answer>' },
      { score: 0.8, raw: 'The counts are right. <answer>0.8</answer>' },
    ]);
    expect(received).toHaveLength(2);
    const { path, authorization, body } = received[0]!;
    expect(path).toBe('/v1/chat/completions');
    expect(authorization).toBe('Bearer sk-test-123');
    expect(body.model).toBe('judge-vl');
    expect(body.temperature).toBe(0);
    expect(body.messages[0]!.role).toBe('system');
    expect(body.messages[0]!.content).toContain(JUDGE_RUBRIC);
    expect(body.messages[1]!.role).toBe('user');
    const parts = body.messages[1]!.content as ({ type: 'text'; text: string } | { type: 'image_url'; image_url: { url: string } })[];
    const image = parts.find((p) => p.type === 'image_url');
    const text = parts.find((p) => p.type === 'text');
    expect(text?.text).toContain(example.question);
    expect(text?.text).toContain('<think>a</think><answer>1</answer>');
    expect(text?.text).toContain('<answer>score</answer>');
    expect(image?.image_url.url).toMatch(/^data:image\/png;base64,/);
    const png = Buffer.from(image!.image_url.url.slice('data:image/png;base64,'.length), 'base64');
    expect(png.readUInt32BE(16)).toBe(24 * 8); // IHDR width: the 24 px image upscaled ×8
  });

  it('retries 503s with backoff and succeeds', async () => {
    const { baseUrl, received } = await serveChat((_r, n) => (n < 2 ? { status: 503, body: '{"error":"overloaded"}' } : completion('<answer>0.4</answer>')));
    const annotator = new OpenAiCompatibleAnnotator({ baseUrl, model: 'm', ...fast });
    expect(await annotator.annotate([request('x')])).toEqual([{ score: 0.4, raw: '<answer>0.4</answer>' }]);
    expect(received).toHaveLength(3);
  });

  it('retries a 429 and honours Retry-After', async () => {
    const { baseUrl, received } = await serveChat((_r, n) => (n === 0 ? { status: 429, body: 'slow down', headers: { 'retry-after': '0' } } : completion('<answer>1</answer>')));
    const annotator = new OpenAiCompatibleAnnotator({ baseUrl, model: 'm', ...fast });
    expect((await annotator.annotate([request('x')]))[0]!.score).toBe(1);
    expect(received).toHaveLength(2);
  });

  it('fails at once on a 401, naming the status and the fix, never the key', async () => {
    const { baseUrl, received } = await serveChat(() => ({ status: 401, body: '{"error":"invalid api key sk-secret-999"}' }));
    const annotator = new OpenAiCompatibleAnnotator({ baseUrl, model: 'm', apiKey: 'sk-secret-999', ...fast });
    const err = await annotator.annotate([request('x')]).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(SophiaError);
    const message = (err as SophiaError).message;
    expect(message).toContain('HTTP 401');
    expect(message).toContain('invalid api key');
    expect(message).toContain('Check the API key');
    expect(message).not.toContain('sk-secret-999');
    expect((err as SophiaError).retryable).toBe(false);
    expect(received).toHaveLength(1);
  });

  it('retries an unparseable reply, and gives up with a clear error when none parses', async () => {
    const once = await serveChat((_r, n) => completion(n === 0 ? 'The reasoning is fine.' : 'Final: <answer>0.6</answer>'));
    const annotator = new OpenAiCompatibleAnnotator({ baseUrl: once.baseUrl, model: 'm', ...fast });
    expect((await annotator.annotate([request('x')]))[0]!.score).toBe(0.6);
    expect(once.received).toHaveLength(2);

    await stopChatServers();
    const never = await serveChat(() => completion('I cannot judge this.'));
    const stubborn = new OpenAiCompatibleAnnotator({ baseUrl: never.baseUrl, model: 'm', maxRetries: 2, ...fast });
    await expect(stubborn.annotate([request('x')])).rejects.toThrow(/gave no readable score in 3 attempts.*I cannot judge this.*<answer>score<\/answer>/s);
    expect(never.received).toHaveLength(3);
  });

  it('gives up on an unreachable server with an error that says what to check', async () => {
    const { baseUrl } = await serveChat(() => completion('<answer>1</answer>'));
    await stopChatServers(); // nothing listens on that port any more
    const annotator = new OpenAiCompatibleAnnotator({ baseUrl, model: 'm', maxRetries: 1, ...fast });
    const err = await annotator.annotate([request('x')]).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(SophiaError);
    expect((err as SophiaError).category).toBe('unavailable');
    expect((err as SophiaError).message).toMatch(/failed 2 attempts; last: network error.*Check that the server is running/s);
  });

  it('keeps at most `concurrency` requests in flight and returns results in request order', async () => {
    const { baseUrl, stats } = await serveChat((r) => {
      const text = (r.body.messages[1]!.content as { type: string; text?: string }[]).find((p) => p.type === 'text')!.text!;
      const i = Number(/item (\d+)/.exec(text)![1]);
      return { ...completion(`<answer>${i / 10}</answer>`), delayMs: 30 };
    });
    const annotator = new OpenAiCompatibleAnnotator({ baseUrl, model: 'm', concurrency: 3, ...fast });
    const items = Array.from({ length: 10 }, (_, i) => request(`<think>item ${i}</think><answer>0</answer>`));
    const progress: [number, number][] = [];
    const scores = (await annotator.annotate(items, (done, total) => progress.push([done, total]))).map((a) => a.score);
    expect(scores).toEqual([0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9]);
    // Progress after each completed request, so the activity annotating hours of data heartbeats as it goes.
    expect(progress).toEqual(Array.from({ length: 10 }, (_, i) => [i + 1, 10]));
    expect(stats.maxInFlight).toBeLessThanOrEqual(3);
    expect(stats.maxInFlight).toBeGreaterThan(1);
  });

  it('validates its options once, naming the field', () => {
    expect(() => new OpenAiCompatibleAnnotator({ baseUrl: 'localhost:8000', model: 'm' })).toThrow(/annotator.baseUrl/);
    expect(() => new OpenAiCompatibleAnnotator({ baseUrl: 'http://x/v1', model: '' })).toThrow(/annotator.model/);
    expect(() => new OpenAiCompatibleAnnotator({ baseUrl: 'http://x/v1', model: 'm', concurrency: 0 })).toThrow(/annotator.concurrency/);
    expect(() => new OpenAiCompatibleAnnotator({ baseUrl: 'http://x/v1', model: 'm', maxRetries: -1 })).toThrow(/annotator.maxRetries/);
  });
});

// ---------------------------------------------------------------------------------------------------------------
// Judges named by a run, configured on the worker (SOPHIA_JUDGES): where each key may go
// ---------------------------------------------------------------------------------------------------------------

describe('judgeAnnotator', () => {
  const judges = (a: string, b: string) => JSON.stringify({ alpha: { baseUrl: a, model: 'judge-a', apiKeyEnv: 'ALPHA_KEY', maxRetries: 0 }, beta: { baseUrl: b, model: 'judge-b', apiKeyEnv: 'BETA_KEY' } });
  const secrets = { ALPHA_KEY: 'sk-alpha-1111', BETA_KEY: 'sk-beta-2222', SOPHIA_S3_SECRET_ACCESS_KEY: 's3-secret-3333' };

  it("sends the named judge's key to that judge's endpoint only, nothing to the other judge", async () => {
    const a = await serveChat(() => completion('<answer>0.3</answer>'));
    const b = await serveChat(() => completion('<answer>0.9</answer>'));
    const annotator = judgeAnnotator('alpha', { ...secrets, SOPHIA_JUDGES: judges(a.baseUrl, b.baseUrl) }, fast);
    expect(annotator.name).toBe('llm:judge-a');
    expect((await annotator.annotate([request('x'), request('y')])).map((x) => x.score)).toEqual([0.3, 0.3]);
    expect(a.received.map((r) => [r.path, r.authorization, r.body.model])).toEqual([
      ['/v1/chat/completions', 'Bearer sk-alpha-1111', 'judge-a'],
      ['/v1/chat/completions', 'Bearer sk-alpha-1111', 'judge-a'],
    ]);
    expect(b.received).toHaveLength(0);
  });

  it('does not follow a redirect: the key never reaches where the judge points it, and the error says why', async () => {
    const elsewhere = await serveChat(() => completion('<answer>1</answer>'));
    const judge = await serveChat(() => ({ status: 307, body: '', headers: { location: `${elsewhere.baseUrl}/chat/completions` } }));
    const annotator = judgeAnnotator('alpha', { ...secrets, SOPHIA_JUDGES: judges(judge.baseUrl, judge.baseUrl) }, fast);
    const err = await annotator.annotate([request('x')]).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(SophiaError);
    expect((err as SophiaError).retryable).toBe(false);
    expect((err as SophiaError).message).toMatch(/HTTP 307.*redirects are not followed/s);
    expect(judge.received).toHaveLength(1);
    expect(elsewhere.received).toHaveLength(0);
  });

  it('refuses an unknown name, non-retryably, naming the variable to set', () => {
    const call = (env: Record<string, string>) => {
      try {
        judgeAnnotator('gpt-judge', env);
      } catch (err) {
        return err as ConfigError;
      }
      throw new Error('expected a ConfigError');
    };
    const none = call(secrets);
    expect(none).toBeInstanceOf(ConfigError);
    expect(none.retryable).toBe(false);
    expect(none.message).toMatch(/no judge named "gpt-judge".*SOPHIA_JUDGES/s);
    expect(call({ ...secrets, SOPHIA_JUDGES: judges('http://127.0.0.1:1/v1', 'http://127.0.0.1:2/v1') }).message).toMatch(/configured: alpha, beta/);
  });

  it("refuses a judge whose key variable is unset on the worker, naming it", () => {
    expect(() => judgeAnnotator('beta', { SOPHIA_JUDGES: judges('http://127.0.0.1:1/v1', 'http://127.0.0.1:2/v1') })).toThrow(/BETA_KEY: judge beta takes its API key from BETA_KEY, which is not set/);
  });

  it('validates the configuration, naming the variable and the field', () => {
    expect(() => judgeAnnotator('x', { SOPHIA_JUDGES: '{"x": {"baseUrl": "file:///etc/passwd", "model": "m"}}' })).toThrow(/SOPHIA_JUDGES\.x\.baseUrl: must be an http\(s\) URL/);
    expect(() => judgeAnnotator('x', { SOPHIA_JUDGES: '{"x": {"baseUrl": "https://u:p@judge.example/v1", "model": "m"}}' })).toThrow(/annotator\.baseUrl: must not carry credentials/);
    expect(() => judgeAnnotator('x', { SOPHIA_JUDGES: '{"x": {"baseUrl": "https://judge.example/v1"}}' })).toThrow(/SOPHIA_JUDGES\.x\.model/);
    expect(() => judgeAnnotator('x', { SOPHIA_JUDGES: '{"x": ' })).toThrow(/SOPHIA_JUDGES: is not JSON or YAML/);
  });

  it('reads SOPHIA_JUDGES_FILE (YAML) and refuses a name defined twice', () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'sophia-judges-'));
    try {
      const file = path.join(dir, 'judges.yaml');
      writeFileSync(file, 'alpha:\n  baseUrl: https://judge.example/v1\n  model: judge-y\n');
      expect(judgeAnnotator('alpha', { SOPHIA_JUDGES_FILE: file }).name).toBe('llm:judge-y');
      expect(() => judgeAnnotator('alpha', { SOPHIA_JUDGES_FILE: file, SOPHIA_JUDGES: judges('http://a/v1', 'http://b/v1') })).toThrow(/defined in both SOPHIA_JUDGES and SOPHIA_JUDGES_FILE/);
      expect(() => judgeAnnotator('alpha', { SOPHIA_JUDGES_FILE: path.join(dir, 'missing.yaml') })).toThrow(/SOPHIA_JUDGES_FILE: cannot read/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
