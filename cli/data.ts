/**
 * `sophia data check --format sophiavl|easyr1 --location PATH [...]`: reads a training dataset the way a run will
 * (datasets/reader.ts: streamed, images decoded and checked, problem types mapped, bad rows counted per reason) and
 * prints what it found, without training: rows kept and skipped by reason with the first bad rows named (file, row,
 * reason), the answer types, categories and sources, the images shrunk, and how the stable-hash split
 * (datasets/split.ts) divides the kept rows. Exits 1 when the bad share is past `--max-bad-share` (the run would
 * stop there too, before training), 0 otherwise. `--json` prints the same as one JSON object.
 */
import { parseArgs } from 'node:util';
import { SophiaError } from '../common/errors';
import { DatasetQualityError, openDataset } from '../datasets/reader';
import { type DataSplit, splitOf } from '../datasets/split';
import { DATASET_FORMATS, type DatasetFormat, type DatasetOptions, type ReadReport } from '../datasets/types';
import { userPath } from './paths';

type Env = Readonly<Record<string, string | undefined>>;

export const DATA_HELP = `usage: sophia data check --format ${DATASET_FORMATS.join('|')} --location PATH [options]

Reads a training dataset as a run would and reports what it holds, without training (docs/datasets.md).

  --format F            ${DATASET_FORMATS.join(' or ')}
  --location PATH       a data file, a folder of them (.parquet, .jsonl, .json), or s3://bucket/prefix
  --files GLOB[,GLOB]   only these files under the folder (* within one path segment)
  --image-root PATH     where relative image paths resolve (default: the location's folder)
  --max-bad-share X     the share of bad rows a run tolerates (default 0.01)
  --test X              the test share of the stable-hash split (default 0.05)
  --validation X        the validation share (default 0.01)
  --limit N             stop after N rows
  --json                print one JSON object instead of the text report`;

/** Counts of a field's values, most frequent first. */
function counted(values: Map<string, number>): [string, number][] {
  return [...values].sort((a, b) => b[1] - a[1] || a[0].localeCompare(b[0]));
}

function share(value: string | undefined, flag: string, fallback: number): number {
  if (value === undefined) return fallback;
  const n = Number(value);
  if (!(n >= 0 && n <= 1)) throw new SophiaError('input', `${flag} must be a number in [0, 1] (got ${JSON.stringify(value)})`, { hint: DATA_HELP });
  return n;
}

export interface DataCheck {
  report: ReadReport;
  answerTypes: Record<string, number>;
  categories: Record<string, number>;
  sources: Record<string, number>;
  splits: Record<DataSplit, number>;
  /** Set when the bad share stopped the read. */
  stopped?: string;
}

/** `args`: what follows `sophia data`. Returns the exit code; bad input throws a `SophiaError` (exit 2). */
export async function dataCommand(args: string[], env: Env, out: NodeJS.WritableStream): Promise<number> {
  const [action, ...rest] = args;
  if (action === undefined || action === 'help' || action === '--help' || action === '-h') {
    out.write(`${DATA_HELP}\n`);
    return action === undefined ? 2 : 0;
  }
  if (action !== 'check') throw new SophiaError('input', `data ${JSON.stringify(action)}: the data command is "data check"`, { hint: DATA_HELP });
  const { values } = parseArgs({
    args: rest,
    options: {
      format: { type: 'string' },
      location: { type: 'string' },
      files: { type: 'string' },
      'image-root': { type: 'string' },
      'max-bad-share': { type: 'string' },
      test: { type: 'string' },
      validation: { type: 'string' },
      limit: { type: 'string' },
      json: { type: 'boolean' },
    },
    strict: true,
  });
  if (!values.format || !values.location) throw new SophiaError('input', '--format and --location are required', { hint: DATA_HELP });
  if (!(DATASET_FORMATS as readonly string[]).includes(values.format)) throw new SophiaError('input', `--format must be ${DATASET_FORMATS.join(' or ')} (got ${values.format})`);
  const limit = values.limit === undefined ? undefined : Number(values.limit);
  if (limit !== undefined && !(Number.isSafeInteger(limit) && limit >= 1)) throw new SophiaError('input', `--limit must be a whole number >= 1 (got ${values.limit})`);
  const shares = { test: share(values.test, '--test', 0.05), validation: share(values.validation, '--validation', 0.01) };
  if (shares.test + shares.validation > 1) throw new SophiaError('input', `--test + --validation must be at most 1 (got ${shares.test + shares.validation})`);
  const options: DatasetOptions = {
    format: values.format as DatasetFormat,
    location: userPath(values.location, env),
    ...(values.files ? { files: values.files.split(',') } : {}),
    ...(values['image-root'] ? { imageRoot: values['image-root'] } : {}),
    ...(values['max-bad-share'] !== undefined ? { maxBadShare: share(values['max-bad-share'], '--max-bad-share', 0.01) } : {}),
  };
  const reader = openDataset(options);
  const answerTypes = new Map<string, number>();
  const categories = new Map<string, number>();
  const sources = new Map<string, number>();
  const splits: Record<DataSplit, number> = { train: 0, validation: 0, test: 0 };
  const bump = (m: Map<string, number>, k: string) => m.set(k, (m.get(k) ?? 0) + 1);
  let stopped: string | undefined;
  try {
    for await (const row of reader.rows()) {
      bump(answerTypes, row.answerType);
      bump(categories, row.category ?? '(none)');
      bump(sources, row.source);
      splits[splitOf(row.id, shares)]++;
      if (limit !== undefined && reader.report.read >= limit) break;
    }
  } catch (err) {
    if (!(err instanceof DatasetQualityError)) throw err;
    stopped = err.message;
  }
  const check: DataCheck = {
    report: reader.report,
    answerTypes: Object.fromEntries(counted(answerTypes)),
    categories: Object.fromEntries(counted(categories)),
    sources: Object.fromEntries(counted(sources)),
    splits,
    ...(stopped ? { stopped } : {}),
  };
  out.write(values.json ? `${JSON.stringify(check, null, 2)}\n` : `${formatCheck(check, options.location)}\n`);
  return stopped ? 1 : 0;
}

export function formatCheck(check: DataCheck, location: string): string {
  const { report } = check;
  const bad = report.read - report.kept;
  const line = (entries: Record<string, number>) => Object.entries(entries).map(([k, n]) => `${k} ${n}`).join(', ') || '—';
  const lines = [
    `${location}: ${report.read} rows read in ${report.files.length} file(s); ${report.kept} kept, ${bad} skipped (${report.read ? ((100 * bad) / report.read).toFixed(2) : '0.00'} %)`,
    ...(bad > 0 ? [`  skipped by reason: ${line(report.bad)}`, ...report.examples.map((e) => `    ${e.file} row ${e.row}: ${e.reason} (${e.detail})`)] : []),
    `  answer types: ${line(check.answerTypes)}`,
    `  categories: ${line(check.categories)}`,
    `  sources: ${line(check.sources)}`,
    `  images shrunk to the processor's bounds: ${report.resizedImages}`,
    `  split (stable hash of the id): train ${check.splits.train}, validation ${check.splits.validation}, test ${check.splits.test}`,
  ];
  if (check.stopped) lines.push(`stopped: ${check.stopped}`);
  return lines.join('\n');
}
