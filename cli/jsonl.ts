/**
 * The JSONL input of `sophia grade` and `sophia score`: every line of `--jsonl FILE` read and checked before anything
 * is written, blank lines skipped, each failure naming the file and line and showing an example line.
 */
import { readFile } from 'node:fs/promises';
import { SophiaError } from '../common/errors';

/**
 * Every non-blank line of `file`, parsed and turned into a `T` by `toItem` (which throws, naming `where`, for a bad
 * one). `what` names a line's contents in messages ("request", "row"); `example` is a valid line.
 */
export async function readJsonLines<T>(file: string, what: string, example: string, toItem: (value: unknown, where: string) => T): Promise<T[]> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (err) {
    const reason = err instanceof Error && 'code' in err && err.code === 'ENOENT' ? 'no such file' : String(err);
    throw new SophiaError('input', `--jsonl ${file}: cannot read the file (${reason}); expected a JSONL file with one ${what} per line`, { cause: err });
  }
  const items: T[] = [];
  for (const [i, line] of text.split(/\r?\n/).entries()) {
    if (line.trim() === '') continue;
    const where = `${file} line ${i + 1}`;
    let value: unknown;
    try {
      value = JSON.parse(line);
    } catch (err) {
      const reason = err instanceof Error ? err.message : String(err);
      throw new SophiaError('input', `${where}: invalid JSON (${reason}); expected one object per line like ${example}`);
    }
    items.push(toItem(value, where));
  }
  return items;
}
