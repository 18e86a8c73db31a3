/**
 * Reading a benchmark row's fields from a parsed JSON line, with errors that name the field, say what was
 * expected and what was found. Each benchmark's validator is a few calls to these readers; the caller (the
 * `sophia score` command, the evaluation stage's dataset reader) adds where the row came from (file and line).
 *
 * Nested fields are named by their path (`metadata.task`), as in the published datasets' struct columns.
 */
import { SophiaError } from '../common/errors';

type Row = Readonly<Record<string, unknown>>;

/** A field of a benchmark row is missing or has the wrong type or value. */
export class RowFieldError extends SophiaError {
  /** The field's path in the row, e.g. `precision` or `metadata.skills`. */
  readonly field: string;
  constructor(field: string, expected: string, value: unknown) {
    const got = value === undefined ? 'it is missing' : `got ${describe(value)}`;
    super('input', `field "${field}": expected ${expected}; ${got}`);
    this.field = field;
  }
}

/** A short JSON rendering of a bad value for messages (long values are cut). */
function describe(value: unknown): string {
  const text = JSON.stringify(value) ?? String(value);
  return text.length > 80 ? `${text.slice(0, 77)}...` : text;
}

/** The path of `field` inside `parent` (`metadata` + `task` → `metadata.task`). */
const pathOf = (parent: string | undefined, field: string) => (parent === undefined ? field : `${parent}.${field}`);

/** A required string field. */
export function readString(row: Row, field: string, expected = 'a string', parent?: string): string {
  const value = row[field];
  if (typeof value !== 'string') throw new RowFieldError(pathOf(parent, field), expected, value);
  return value;
}

/** An optional string field: absent or null reads as undefined. */
export function readOptionalString(row: Row, field: string, parent?: string): string | undefined {
  const value = row[field];
  if (value === undefined || value === null) return undefined;
  if (typeof value !== 'string') throw new RowFieldError(pathOf(parent, field), 'a string or null', value);
  return value;
}

/** A required field holding one of `values`. */
export function readEnum<T extends string>(row: Row, field: string, values: readonly T[]): T {
  const value = row[field];
  if (typeof value !== 'string' || !(values as readonly string[]).includes(value)) {
    throw new RowFieldError(field, `one of ${values.map((v) => JSON.stringify(v)).join(', ')}`, value);
  }
  return value as T;
}

/** A list of strings; `allowEmpty` false refuses `[]`. */
export function readStringList(row: Row, field: string, options: { allowEmpty: boolean; parent?: string }): string[] {
  const value = row[field];
  const expected = options.allowEmpty ? 'a list of strings' : 'a non-empty list of strings';
  if (!Array.isArray(value) || (!options.allowEmpty && value.length === 0) || !value.every((v): v is string => typeof v === 'string')) {
    throw new RowFieldError(pathOf(options.parent, field), expected, value);
  }
  return value;
}

/** An optional JSON object (a struct column such as `metadata`): absent or null reads as undefined. */
export function readOptionalObject(row: Row, field: string): Row | undefined {
  const value = row[field];
  if (value === undefined || value === null) return undefined;
  if (typeof value !== 'object' || Array.isArray(value)) throw new RowFieldError(field, 'an object', value);
  return value as Row;
}
