/**
 * `sophia score --benchmark NAME --jsonl FILE`: scores model responses with a benchmark's own answer extraction
 * and scoring rules, through the same `benchmarks/` functions the evaluation stage uses, so a reported number can
 * be checked (or re-scored) line by line without running a model.
 *
 * Input: one JSON object per line holding the benchmark row's own fields, as in its published dataset (e.g.
 * MathVista's `question_type`, `answer_type`, `precision`, `choices`, `answer`), plus `response`, the model's full
 * output (blank lines ignored, other fields ignored). Output: one line per input, in order,
 * `{"correct": boolean, "score": number, "extracted": string|null}`. Every line is validated before anything is
 * written, so a bad file produces an error naming the line and the field, and no partial output.
 */
import { SophiaError } from '../common/errors';
import { readJsonLines } from './jsonl';
import { BENCHMARK_NAMES, BENCHMARKS, benchmarkByName } from '../benchmarks/index';
import { RowFieldError } from '../benchmarks/fields';
import { type Benchmark, type ScorableRow } from '../benchmarks/types';

/** What `sophia score --help` prints: the input, the output, and per benchmark its fields, rule and an example. */
export const SCORE_HELP = `usage: sophia score --benchmark ${BENCHMARK_NAMES.join('|')} --jsonl FILE

Scores model responses with a benchmark's own answer extraction and scoring, as the evaluation stage does.
FILE has one JSON object per line: the benchmark row's own fields, as in its published dataset, plus
"response", the model's full output. One line is printed per input, in order:
  {"correct": true|false, "score": 1|0, "extracted": "the answer read"|null}

The prediction is the content of the last <answer>…</answer> in the response, else the whole response.
Rule-based throughout: where the official pipeline asks GPT to extract or judge (MathVista, MathVerse), rules
stand in; docs/benchmarks.md lists every deviation.

${BENCHMARK_NAMES.map((name) => describe(name, BENCHMARKS[name])).join('\n\n')}`;

function describe(name: string, benchmark: Benchmark): string {
  return [
    `${name} (${benchmark.title})`,
    `  fields:     ${benchmark.fields.scoring}`,
    `  categories: ${benchmark.fields.categories}`,
    `  correct:    ${benchmark.rule}`,
    `  example:    ${benchmark.exampleLine}`,
  ].join('\n');
}

/** Validates one parsed line against `benchmark`; `where` is "FILE line N" for messages. */
function toRow(value: unknown, benchmark: Benchmark, where: string): { row: ScorableRow; response: string } {
  const fix = { hint: `Each line holds a ${benchmark.title} row's fields plus "response", e.g. ${benchmark.exampleLine}` };
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    throw new SophiaError('input', `${where}: expected a JSON object`, fix);
  }
  const record = value as Record<string, unknown>;
  try {
    if (typeof record.response !== 'string') throw new RowFieldError('response', "a string: the model's full output", record.response);
    return { row: benchmark.read(record), response: record.response };
  } catch (err) {
    if (err instanceof RowFieldError) throw new SophiaError('input', `${where}: ${err.message}`, { ...fix, cause: err });
    throw err;
  }
}

/** Reads and validates every line of a JSONL file of rows with responses. */
async function readRows(file: string, benchmark: Benchmark): Promise<{ row: ScorableRow; response: string }[]> {
  return readJsonLines(file, 'row', benchmark.exampleLine, (value, where) => toRow(value, benchmark, where));
}

/** Scores every line of `file` with the benchmark `name` and writes one JSON result per line to `out`. */
export async function scoreCommand(name: string, file: string, out: NodeJS.WritableStream): Promise<void> {
  const benchmark = benchmarkByName(name);
  const rows = await readRows(file, benchmark);
  const lines = rows.map(({ row, response }) => {
    const { correct, score, extracted } = row.score(response);
    return `${JSON.stringify({ correct, score, extracted })}\n`;
  });
  if (lines.length === 0) return;
  await new Promise<void>((resolve, reject) => {
    out.write(lines.join(''), (err) => (err ? reject(err) : resolve()));
  });
}
