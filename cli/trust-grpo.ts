/**
 * `sophia trust-grpo --json FILE`: computes one step's Trust-GRPO rewards and advantages from given outcome and
 * thinking rewards, through the same `groupRewards` function the trainer calls, so the reward math of any variant
 * can be checked by hand (or on logged rewards) without running anything.
 *
 * Input: one JSON object,
 *   {"step": 10, "totalSteps": 100, "alpha": 0.3, "variant": "trust-grpo", "emptyGroup": "trust",
 *    "groups": [{"outcome": [1, 0], "thinking": [0.4, 0.9]}]}
 * with optional "annealTemperature", "threshold", "std" and "semantics" ("paper" or "authors-code") (see `TrustConfig` in rl/trust.ts; "emptyGroup" defaults
 * to "trust"; "thinking" may be omitted or [] under "grpo"). Unknown fields are rejected: a misspelt optional field
 * would otherwise silently fall back to its default.
 *
 * Output: exactly one line, `{"groups": [{"gamma", "anneal", "rewards": [...], "advantages": [...]}]}`, one entry
 * per input group, in order. The whole file is validated and computed before anything is written, so a bad file
 * produces an error naming the field (`FILE: groups[1].outcome[0]: …`) and no partial output.
 */
import { readFile } from 'node:fs/promises';
import { SophiaError } from '../common/errors';
import { type GroupRewards, type TrustConfig, checkTrustConfig, groupRewards } from '../rl/trust';
import { editDistance } from '../tasks/text-metrics';

const TOP_FIELDS = ['step', 'totalSteps', 'alpha', 'variant', 'emptyGroup', 'annealTemperature', 'threshold', 'std', 'semantics', 'groups'];
const GROUP_FIELDS = ['outcome', 'thinking'];

const EXAMPLE =
  '{"step": 10, "totalSteps": 100, "alpha": 0.3, "variant": "trust-grpo", "emptyGroup": "trust", "groups": [{"outcome": [1, 0], "thinking": [0.4, 0.9]}]}';

interface Group {
  outcome: number[];
  thinking: number[];
}

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/** Rejects fields not in `allowed`, suggesting the closest allowed name (a typo) when there is one. */
function rejectUnknownFields(record: Record<string, unknown>, allowed: readonly string[], where: string): void {
  for (const key of Object.keys(record)) {
    if (allowed.includes(key)) continue;
    const distance = (name: string) => editDistance([...key.toLowerCase()], [...name.toLowerCase()]);
    const closest = allowed.reduce((best, name) => (distance(name) < distance(best) ? name : best));
    const fix = distance(closest) <= 2 ? `did you mean "${closest}"?` : `remove it; the fields are ${allowed.join(', ')}`;
    throw new SophiaError('input', `${where}unknown field ${JSON.stringify(key)}: ${fix}`);
  }
}

/** Turns a validation error of rl/trust (which names the field) into an input error naming the file too. */
function asInputError(err: unknown, file: string): unknown {
  if (err instanceof TypeError || err instanceof RangeError) return new SophiaError('input', `${file}: ${err.message}`, { cause: err });
  return err;
}

/** Reads and validates the whole file; every message starts with the file and the field path. */
async function readInput(file: string): Promise<{ config: TrustConfig; groups: Group[] }> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (err) {
    const reason = err instanceof Error && 'code' in err && err.code === 'ENOENT' ? 'no such file' : String(err);
    throw new SophiaError('input', `--json ${file}: cannot read the file (${reason}); expected a JSON file like ${EXAMPLE}`, { cause: err });
  }
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (err) {
    const reason = err instanceof Error ? err.message : String(err);
    throw new SophiaError('input', `${file}: invalid JSON (${reason}); expected one object like ${EXAMPLE}`);
  }
  if (!isObject(value)) throw new SophiaError('input', `${file}: expected a JSON object like ${EXAMPLE}`);
  rejectUnknownFields(value, TOP_FIELDS, `${file}: `);

  const { groups: rawGroups, ...rest } = value;
  const config = rest as unknown as TrustConfig;
  try {
    checkTrustConfig(config);
  } catch (err) {
    throw asInputError(err, file);
  }
  if (!Array.isArray(rawGroups)) {
    const got = rawGroups === undefined ? 'it is missing' : `got ${JSON.stringify(rawGroups)}`;
    throw new SophiaError('input', `${file}: groups: expected an array of {"outcome": [...], "thinking": [...]} objects; ${got}`);
  }
  const groups = rawGroups.map((group: unknown, i): Group => {
    const where = `${file}: groups[${i}]`;
    if (!isObject(group)) throw new SophiaError('input', `${where}: expected an object like {"outcome": [1, 0], "thinking": [0.4, 0.9]}; got ${JSON.stringify(group)}`);
    rejectUnknownFields(group, GROUP_FIELDS, `${where}: `);
    // Under grpo a missing "thinking" means []; elsewhere `groupRewards` reports it missing. It also checks the
    // arrays' element types and ranges, so the CLI and the trainer accept exactly the same groups.
    const thinking = group.thinking === undefined && config.variant === 'grpo' ? [] : group.thinking;
    return { outcome: group.outcome as number[], thinking: thinking as number[] };
  });
  return { config, groups };
}

/** Computes every group of `file` and writes the one-line JSON result to `out`. */
export async function trustGrpoCommand(file: string, out: NodeJS.WritableStream): Promise<void> {
  const { config, groups } = await readInput(file);
  let results: GroupRewards[];
  try {
    results = groups.map((group, i) => groupRewards({ ...config, ...group, where: `groups[${i}]` }));
  } catch (err) {
    throw asInputError(err, file);
  }
  const line = JSON.stringify({ groups: results.map(({ gamma, anneal, rewards, advantages }) => ({ gamma, anneal, rewards, advantages })) });
  await new Promise<void>((resolve, reject) => {
    out.write(`${line}\n`, (err) => (err ? reject(err) : resolve()));
  });
}
