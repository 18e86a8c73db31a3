/**
 * The `sophia` command line. Each subcommand lives in its own module; this file parses arguments, prints
 * usage, and turns errors into one readable line (with the fix) and an exit code.
 */
import * as path from 'node:path';
import { parseArgs } from 'node:util';
import { SophiaError } from '../common/errors';
import { gradeCommand } from './grade';
import { WARMUP_PRESETS, type WarmupPresetName } from '../training/presets';
import { runCommand } from './run';
import { sftCommand } from './sft';

const USAGE = `usage: sophia <command> [options]

commands:
  run [--run-id ID] [--storage DIR|s3://BUCKET/PREFIX] [--steps N]
        run the pipeline with in-process workers; on the embedded Temporal dev server unless
        TEMPORAL_ADDRESS is set; the same --run-id continues an interrupted run
  sft --preset ci|tiny [--run-id ID] [--storage DIR|s3://BUCKET/PREFIX]
        the tiny world's SFT warmup in this process: dataset, untrained and trained evaluation, report
  grade --jsonl FILE   grade responses with the outcome-reward rules (one JSON line per input)
  help  show this text

environment: TEMPORAL_ADDRESS, TEMPORAL_NAMESPACE, SOPHIA_STORAGE, SOPHIA_S3_* (see README.md)`;

const REPO_ROOT = path.resolve(__dirname, '..');

export async function main(argv: string[], env: NodeJS.ProcessEnv = process.env): Promise<number> {
  const [command, ...rest] = argv;
  try {
    switch (command) {
      case 'run': {
        const { values } = parseArgs({
          args: rest,
          options: { 'run-id': { type: 'string' }, storage: { type: 'string' }, steps: { type: 'string', default: '3' } },
          strict: true,
        });
        const steps = Number(values.steps);
        if (!Number.isInteger(steps) || steps < 1) throw new SophiaError('input', `--steps: ${JSON.stringify(values.steps)} is not an integer ≥ 1`);
        return await runCommand({ runId: values['run-id'], storage: values.storage, steps, env, repoRoot: REPO_ROOT, out: process.stdout });
      }
      case 'sft': {
        const { values } = parseArgs({ args: rest, options: { preset: { type: 'string', default: 'tiny' }, 'run-id': { type: 'string' }, storage: { type: 'string' } }, strict: true });
        if (!Object.hasOwn(WARMUP_PRESETS, values.preset)) {
          throw new SophiaError('input', `--preset: ${JSON.stringify(values.preset)} is not a preset; use one of ${Object.keys(WARMUP_PRESETS).join(', ')}`);
        }
        return await sftCommand({ preset: values.preset as WarmupPresetName, runId: values['run-id'], storage: values.storage, env, repoRoot: REPO_ROOT, out: process.stdout });
      }
      case 'grade': {
        const { values } = parseArgs({ args: rest, options: { jsonl: { type: 'string' } }, strict: true });
        if (values.jsonl === undefined) {
          throw new SophiaError('input', '--jsonl FILE is required: a file with one {"type", "response", "answer"} JSON object per line');
        }
        await gradeCommand(values.jsonl, process.stdout);
        return 0;
      }
      case undefined:
      case 'help':
      case '--help':
      case '-h':
        console.log(USAGE);
        return command === undefined ? 2 : 0;
      default:
        console.error(`sophia: unknown command ${JSON.stringify(command)}\n\n${USAGE}`);
        return 2;
    }
  } catch (err) {
    if (err instanceof SophiaError || (err instanceof TypeError && 'code' in err && String(err.code).startsWith('ERR_PARSE_ARGS'))) {
      console.error(`sophia: ${err.message}`);
      return 2;
    }
    throw err;
  }
}
