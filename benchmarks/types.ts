/**
 * The shape every benchmark module in `benchmarks/` fills in, and the one generic step that turns it into a
 * registry entry.
 *
 * Abstractions:
 *  - `BenchmarkScore`: what scoring one response yields, the same for every benchmark (and what `sophia score`
 *    prints per line);
 *  - `Categories`: the per-category keys a row belongs to (MathVista's `task` and `skills`, MMStar's `category`…),
 *    from which the evaluation stage builds its per-category tables;
 *  - `BenchmarkDefinition<Row>`: what a module declares: its typed row, the validator that reads that row from a
 *    line of the published dataset, the scoring rule and the category keys;
 *  - `Benchmark`: a definition with its row type erased (`defineBenchmark`), so that the registry can hold all of
 *    them in one table and callers pick one by name without casts.
 */

/** The result of scoring one response against one benchmark row. */
export interface BenchmarkScore {
  /** Whether the benchmark's rule counts the response as right. */
  correct: boolean;
  /** The row's score in [0, 1]: 1 or 0 for every benchmark here (all report plain accuracy). */
  score: number;
  /**
   * The answer the rule read from the response, in the form it compared with the ground truth (an option's text,
   * a letter, a rounded number, MMMU's candidate list); null when it read no answer at all.
   */
  extracted: string | null;
}

/**
 * Category key → the values a row has for it. A value list, not one value, because some keys are multi-valued
 * (a MathVista row has several `skills` and counts towards each). A key whose field the row lacks is absent.
 */
export type Categories = Readonly<Record<string, readonly string[]>>;

/** What one benchmark module declares. */
export interface BenchmarkDefinition<Row> {
  /** The published split scored, for messages and docs, e.g. "MathVista testmini". */
  readonly title: string;
  /** The keys `categories` fills, in the order the benchmark's own reports list them. */
  readonly categoryKeys: readonly string[];
  /** The row fields scoring reads and those the category report reads, for help text: one line each. */
  readonly fields: { readonly scoring: string; readonly categories: string };
  /** What counts as correct, in one sentence, for help text (the module comment has the whole rule). */
  readonly rule: string;
  /** A valid `sophia score` line for this benchmark, shown in errors and help. */
  readonly exampleLine: string;
  /** Reads a row from a parsed dataset line; throws `RowFieldError` naming the first bad field. */
  readonly validate: (record: Readonly<Record<string, unknown>>) => Row;
  /** Scores one full model response (thinking included) against the row. */
  readonly score: (row: Row, response: string) => BenchmarkScore;
  /** The row's category values. */
  readonly categories: (row: Row) => Categories;
}

/** A row that passed validation, bound to its benchmark's rules. */
export interface ScorableRow {
  score(response: string): BenchmarkScore;
  readonly categories: Categories;
}

/** A benchmark as the registry holds it: the definition's metadata plus `read`, which validates and binds a row. */
export interface Benchmark {
  readonly title: string;
  readonly categoryKeys: readonly string[];
  readonly fields: { readonly scoring: string; readonly categories: string };
  readonly rule: string;
  readonly exampleLine: string;
  /** Validates a parsed dataset line (throws `RowFieldError`) and returns it bound to the scoring rule. */
  read(record: Readonly<Record<string, unknown>>): ScorableRow;
}

/** Erases a definition's row type: `read` validates once, and the bound row scores any number of responses. */
export function defineBenchmark<Row>(definition: BenchmarkDefinition<Row>): Benchmark {
  const { validate, score, categories, ...described } = definition;
  return {
    ...described,
    read(record) {
      const row = validate(record);
      return { score: (response) => score(row, response), categories: categories(row) };
    },
  };
}

/** The score of a binary rule. */
export function binaryScore(correct: boolean, extracted: string | null): BenchmarkScore {
  return { correct, score: correct ? 1 : 0, extracted };
}
