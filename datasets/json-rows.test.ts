import { Readable } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { SophiaError } from '../common/errors';
import { jsonArrayElements, jsonLines, type JsonRow } from './json-rows';

/** The text as a stream of `size`-byte chunks, so that elements straddle chunk boundaries. */
function chunked(text: string, size: number): Readable {
  const bytes = Buffer.from(text, 'utf8');
  const chunks: Buffer[] = [];
  for (let i = 0; i < bytes.length; i += size) chunks.push(bytes.subarray(i, i + size));
  return Readable.from(chunks);
}

async function collect(rows: AsyncIterable<JsonRow>): Promise<JsonRow[]> {
  const out: JsonRow[] = [];
  for await (const row of rows) out.push(row);
  return out;
}

describe('JSON array streaming', () => {
  const records = [{ a: 'x, ] } [ {', b: [1, [2, { c: '\\"' }]] }, { problem: 'héllo — "quoted" ✓', n: -1.5e3 }, []];

  it('yields each element whatever the chunk size, strings with brackets, escapes and multibyte text included', async () => {
    const text = `\uFEFF \n[ ${records.map((r) => JSON.stringify(r)).join(' ,\n ')} ]\n`;
    for (const size of [1, 3, 7, 64, 100000]) {
      expect(await collect(jsonArrayElements(chunked(text, size), 'f.json'))).toEqual(records.map((record) => ({ record })));
    }
  });

  it('yields a broken element as an error and goes on', async () => {
    const rows = await collect(jsonArrayElements(chunked('[{"a": 1}, {"a": }, {"a": 3}]', 5), 'f.json'));
    expect(rows.map((r) => ('error' in r ? 'error' : r.record))).toEqual([{ a: 1 }, 'error', { a: 3 }]);
  });

  it('refuses an array that never closes, naming the file', async () => {
    await expect(collect(jsonArrayElements(chunked('[{"a": 1}, {"a": 2', 4), 'data/x.json'))).rejects.toThrow(SophiaError);
    await expect(collect(jsonArrayElements(chunked('[{"a": 1}', 4), 'data/x.json'))).rejects.toThrow(/data\/x\.json: the JSON array is not closed/);
  });

  it('yields the first element before the stream ends', async () => {
    const stream = new Readable({ read() {} });
    stream.push('[{"first": true}, ');
    const iterator = jsonArrayElements(stream, 'f.json')[Symbol.asyncIterator]();
    expect(await iterator.next()).toEqual({ done: false, value: { record: { first: true } } });
    stream.push('{"second": true}]');
    stream.push(null);
    expect(await iterator.next()).toEqual({ done: false, value: { record: { second: true } } });
    expect((await iterator.next()).done).toBe(true);
  });
});

describe('JSON Lines', () => {
  it('yields one record a line, skipping blank lines, a bad line as an error', async () => {
    const rows = await collect(jsonLines(chunked('{"a":1}\r\n\n{"a":2}\nnot json\n{"a":3}', 3)));
    expect(rows.map((r) => ('error' in r ? 'error' : r.record))).toEqual([{ a: 1 }, { a: 2 }, 'error', { a: 3 }]);
  });
});
