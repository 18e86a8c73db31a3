/**
 * Streaming JSON rows: JSON Lines (one record a line) and JSON arrays (`[{…}, {…}]`, as SophiaVL-R1 and Video-R1
 * publish theirs), both read from a byte stream so that memory holds one record, never the file.
 *
 * A `.json` file is an array when its first non-blank character is `[`, else JSON Lines (Hugging Face's `json`
 * loader, which EasyR1 uses, accepts both). A record that does not parse is yielded as `{ error }` so that the
 * reader counts it as a bad row; a file whose array never closes is corrupt and stops the read.
 */
import type { Readable } from 'node:stream';
import { StringDecoder } from 'node:string_decoder';
import { SophiaError } from '../common/errors';

export type JsonRow = { record: unknown } | { error: string };

function parse(text: string): JsonRow {
  try {
    return { record: JSON.parse(text) as unknown };
  } catch (err) {
    return { error: (err as Error).message };
  }
}

/**
 * One record per non-blank line. Lines are split here rather than with node:readline, whose async iterator reads
 * ahead without backpressure (a whole file in memory); iterating the stream's chunks keeps to one chunk ahead.
 */
export async function* jsonLines(stream: Readable): AsyncGenerator<JsonRow> {
  const decoder = new StringDecoder('utf8');
  let partial = '';
  const lines = function* (text: string, final: boolean): Generator<JsonRow> {
    const parts = (partial + text).split('\n');
    partial = final ? '' : parts.pop()!;
    for (const part of parts) {
      const line = part.replace(/^\uFEFF/, '').replace(/\r$/, '');
      if (line.trim() !== '') yield parse(line);
    }
  };
  for await (const chunk of stream) yield* lines(decoder.write(chunk as Buffer), false);
  yield* lines(decoder.end(), true);
}

const OPEN_BRACE = 0x7b;
const CLOSE_BRACE = 0x7d;
const OPEN_BRACKET = 0x5b;
const CLOSE_BRACKET = 0x5d;
const QUOTE = 0x22;
const BACKSLASH = 0x5c;
const COMMA = 0x2c;
const BOM = 0xfeff;

/**
 * The elements of a top-level JSON array, one at a time. A small scanner tracks nesting depth and strings to find
 * where each element ends; each element's text is then parsed alone.
 *
 * @param where the file, for the error when the array is not closed
 */
export async function* jsonArrayElements(stream: Readable, where: string): AsyncGenerator<JsonRow> {
  const decoder = new StringDecoder('utf8');
  let depth = 0; // 0 before "[", 1 between elements, >1 inside one
  let inString = false;
  let escaped = false;
  let closed = false;
  let pending = ''; // the current element's text from earlier chunks
  const out: JsonRow[] = [];
  const scan = (chunk: string): void => {
    let start = 0; // where the current element's text starts in this chunk
    for (let i = 0; i < chunk.length; i++) {
      const c = chunk.charCodeAt(i);
      if (closed) {
        if (c > 0x20) throw new SophiaError('corrupt', `${where}: text after the closing "]" of the JSON array`);
        continue;
      }
      if (inString) {
        if (escaped) escaped = false;
        else if (c === BACKSLASH) escaped = true;
        else if (c === QUOTE) inString = false;
        continue;
      }
      if (depth === 0) {
        if (c === OPEN_BRACKET) {
          depth = 1;
          start = i + 1;
        } else if (c > 0x20 && c !== BOM) throw new SophiaError('corrupt', `${where}: not a JSON array`);
        continue;
      }
      if (depth === 1 && (c === COMMA || c === CLOSE_BRACKET)) {
        const text = pending + chunk.slice(start, i);
        pending = '';
        start = i + 1;
        if (text.trim() !== '') out.push(parse(text));
        if (c === CLOSE_BRACKET) closed = true;
        continue;
      }
      if (c === QUOTE) inString = true;
      else if (c === OPEN_BRACE || c === OPEN_BRACKET) depth++;
      else if (c === CLOSE_BRACE || c === CLOSE_BRACKET) depth--;
    }
    if (depth >= 1 && !closed) pending += chunk.slice(start);
  };
  for await (const chunk of stream) {
    scan(decoder.write(chunk as Buffer));
    yield* out.splice(0);
  }
  scan(decoder.end());
  yield* out.splice(0);
  if (!closed) throw new SophiaError('corrupt', `${where}: the JSON array is not closed (a truncated file?)`, { hint: 'Download the file again or remove it from the dataset' });
}

/** Rows of a JSON or JSONL file: by extension, and for `.json` by its first character. */
export async function* jsonRows(open: () => Promise<Readable>, file: string, where: string): AsyncGenerator<JsonRow> {
  if (/\.jsonl$/i.test(file)) {
    yield* jsonLines(await open());
    return;
  }
  const first = await firstNonBlank(await open());
  yield* first === '[' ? jsonArrayElements(await open(), where) : jsonLines(await open());
}

async function firstNonBlank(stream: Readable): Promise<string | undefined> {
  try {
    for await (const chunk of stream) {
      const m = /\S/.exec((chunk as Buffer).toString('utf8'));
      if (m) return m[0];
    }
    return undefined;
  } finally {
    stream.destroy();
  }
}
