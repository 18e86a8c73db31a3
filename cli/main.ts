/**
 * The `sophia` command line. Each subcommand lives in its own module; this file parses arguments, prints
 * usage, and turns errors into one readable line (with the fix) and an exit code.
 */
import { startTracing, stopTracing } from '../observability/tracing';
import * as path from 'node:path';
import { parseArgs } from 'node:util';
import { SophiaError } from '../common/errors';
import { GRADE_HELP, gradeCommand } from './grade';
import { SCORE_HELP, scoreCommand } from './score';
import { evalCommand } from './eval';
import { dataCommand } from './data';
import { modelCommand } from './model';
import { trustGrpoCommand } from './trust-grpo';
import { ablateCommand, parseVariants } from './ablate';
import { apiCommand } from './api';
import { controlCommand, listCommand, statusCommand } from './control';
import { resumeCommand } from './resume';
import { runCommand } from './run';
import { workerCommand } from './worker';
import { sftCommand } from './sft';
import { userPath } from './paths';
import { releaseRuntime } from './session';
import { RUN_PRESETS } from '../config/run-config';

const USAGE = `usage: sophia <command> [options]

commands:
  run --config PRESET|FILE [--run-id ID] [--storage DIR|s3://BUCKET/PREFIX] [--workers]
        run a training pipeline and watch it (presets: ci, tiny, paper); on the embedded Temporal dev server
        with in-process workers unless TEMPORAL_ADDRESS is set; the same --run-id continues a killed run
  status RUN_ID [--json]      a run's stage, step, checkpoints and report
  list                        every run of this deployment (SOPHIA_DEPLOYMENT) on the server
  pause|stop|cancel RUN_ID
        pause (checkpoint, wait), stop (checkpoint, evaluate, finish) or cancel a run
  resume RUN_ID [--storage DIR|s3://…] [--workers]
        continue a paused run; or a failed, cancelled or terminated one from its last good checkpoint (a new
        execution of the same run: completed stages are kept), watched like run
  api [--storage DIR|s3://…] [--workers]
        the HTTP API and dashboard (SOPHIA_API_KEYS or SOPHIA_API_KEYS_FILE required; port SOPHIA_API_PORT, 8080)
  worker --queue cpu|gpu [--storage DIR|s3://…]
        a worker process (repeat --queue for both)
  sft --preset ci|tiny [--run-id ID] [--storage DIR|s3://BUCKET/PREFIX]
        the tiny world's SFT warmup in this process, without Temporal
  grade --jsonl FILE   grade responses with the outcome-reward rules (one JSON line per input); answer types
        numeric, choice (1 or 0), ocr, text (partial credit): what counts as correct in sophia grade --help
  score --benchmark NAME --jsonl FILE
        score responses with a benchmark's own answer extraction and scoring (one JSON line per input); the
        benchmarks and the fields each needs in sophia score --help
  data check --format sophiavl|easyr1 --location PATH [--max-bad-share X] [--json]
        read a training dataset as a run would and report its rows, bad rows by reason and split (sophia data --help)
  eval --model DIR --benchmarks NAME[,NAME…] --data ROOT [--limit N] [--out DIR] …
        evaluate a Hugging Face model directory or a run's checkpoint on benchmarks read from their published files
        (sophia eval --help)
  ablate --config PRESET|FILE --seeds N [--from RUN_ID] [--id ID] [--variants a,b@skip] [--effect POINTS] [--out DIR] [--storage …]
        the RL variants from the same SFT checkpoint and reward model, N seeds each: table, paired differences
        with bootstrap intervals, the power to detect --effect points (default 1.5), plots
  trust-grpo --json FILE
        one step's Trust-GRPO rewards and advantages from given outcome and thinking rewards (one JSON line)
  model upload DIR s3://BUCKET/PREFIX
        a Hugging Face model directory to S3 with its manifest, for engine.model: s3://… (torch runs)
  help  show this text

environment: TEMPORAL_ADDRESS, TEMPORAL_NAMESPACE, SOPHIA_STORAGE, SOPHIA_S3_*, SOPHIA_API_* (see README.md)`;

const REPO_ROOT = path.resolve(__dirname, '..');

type Env = Readonly<Record<string, string | undefined>>;

/** `--storage`: a local folder from the user's directory, or an s3:// URL (paths.ts). */
const storageArg = (value: string | undefined, env: Env) => (value === undefined ? undefined : userPath(value, env));

/** `--config`: a preset name, or a file from the user's directory. */
const configArg = (value: string, env: Env) => (Object.hasOwn(RUN_PRESETS, value) ? value : userPath(value, env));

/** `--effect POINTS` (accuracy points, e.g. 1.5) as a fraction. */
function effectArg(value: string): number {
  const points = Number(value);
  if (!(points > 0 && points < 100)) throw new SophiaError('input', `--effect ${JSON.stringify(value)}: give the difference to detect in accuracy points, above 0 and below 100 (e.g. 1.5)`);
  return points / 100;
}

function requireRunId(positionals: string[], command: string): string {
  if (positionals.length !== 1) throw new SophiaError('input', `${command} needs exactly one RUN_ID (got ${positionals.length})`, { hint: `sophia ${command} RUN_ID` });
  return positionals[0]!;
}

/** Commands whose work is traced when OTEL_EXPORTER_OTLP_ENDPOINT is set (observability/tracing.ts). */
const TRACED_COMMANDS = new Set(['run', 'api', 'resume', 'worker', 'ablate', 'eval']);

export async function main(argv: string[], env: NodeJS.ProcessEnv = process.env): Promise<number> {
  const [command, ...rest] = argv;
  try {
    if (command && TRACED_COMMANDS.has(command)) startTracing(`sophia-${command}`, env);
    switch (command) {
      case 'run': {
        const { values } = parseArgs({
          args: rest,
          options: { config: { type: 'string' }, 'run-id': { type: 'string' }, storage: { type: 'string' }, workers: { type: 'boolean' } },
          strict: true,
        });
        if (!values.config) throw new SophiaError('input', '--config is required: a preset (ci, tiny, paper) or a YAML/JSON run config file');
        return await runCommand({ config: configArg(values.config, env), runId: values['run-id'], storage: storageArg(values.storage, env), workers: values.workers, env, repoRoot: REPO_ROOT, out: process.stdout });
      }
      case 'api': {
        const { values } = parseArgs({ args: rest, options: { storage: { type: 'string' }, workers: { type: 'boolean' } }, strict: true });
        return await apiCommand({ storage: storageArg(values.storage, env), workers: values.workers, env, repoRoot: REPO_ROOT, out: process.stdout });
      }
      case 'status': {
        const { values, positionals } = parseArgs({ args: rest, options: { json: { type: 'boolean', default: false } }, allowPositionals: true, strict: true });
        return await statusCommand(requireRunId(positionals, 'status'), values.json, env, REPO_ROOT, process.stdout);
      }
      case 'list':
        return await listCommand(env, REPO_ROOT, process.stdout);
      case 'resume': {
        const { values, positionals } = parseArgs({ args: rest, options: { storage: { type: 'string' }, workers: { type: 'boolean' } }, allowPositionals: true, strict: true });
        return await resumeCommand({ runId: requireRunId(positionals, 'resume'), storage: storageArg(values.storage, env), workers: values.workers, env, repoRoot: REPO_ROOT, out: process.stdout });
      }
      case 'pause':
      case 'stop':
      case 'cancel': {
        const { positionals } = parseArgs({ args: rest, options: {}, allowPositionals: true, strict: true });
        return await controlCommand(command, requireRunId(positionals, command), env, REPO_ROOT, process.stdout);
      }
      case 'worker': {
        const { values } = parseArgs({ args: rest, options: { queue: { type: 'string', multiple: true }, storage: { type: 'string' } }, strict: true });
        const kinds = values.queue ?? [];
        if (kinds.length === 0 || kinds.some((k) => k !== 'cpu' && k !== 'gpu')) {
          throw new SophiaError('input', `--queue: ${JSON.stringify(kinds)}: give --queue cpu, --queue gpu, or both`);
        }
        return await workerCommand(kinds as ('cpu' | 'gpu')[], storageArg(values.storage, env), env, REPO_ROOT, process.stdout);
      }
      case 'sft': {
        const { values } = parseArgs({ args: rest, options: { preset: { type: 'string', default: 'tiny' }, 'run-id': { type: 'string' }, storage: { type: 'string' } }, strict: true });
        return await sftCommand({ preset: values.preset, runId: values['run-id'], storage: storageArg(values.storage, env), env, repoRoot: REPO_ROOT, out: process.stdout });
      }
      case 'grade': {
        const { values } = parseArgs({ args: rest, options: { jsonl: { type: 'string' }, help: { type: 'boolean', short: 'h' } }, strict: true });
        if (values.help) {
          console.log(GRADE_HELP);
          return 0;
        }
        if (values.jsonl === undefined) {
          throw new SophiaError('input', '--jsonl FILE is required: a file with one {"type", "response", "answer"} JSON object per line (sophia grade --help)');
        }
        await gradeCommand(userPath(values.jsonl, env), process.stdout);
        return 0;
      }
      case 'score': {
        const { values } = parseArgs({ args: rest, options: { benchmark: { type: 'string' }, jsonl: { type: 'string' }, help: { type: 'boolean', short: 'h' } }, strict: true });
        if (values.help) {
          console.log(SCORE_HELP);
          return 0;
        }
        if (values.benchmark === undefined || values.jsonl === undefined) {
          throw new SophiaError('input', '--benchmark NAME and --jsonl FILE are required: a file with one benchmark row plus "response" per line (sophia score --help)');
        }
        await scoreCommand(values.benchmark, userPath(values.jsonl, env), process.stdout);
        return 0;
      }
      case 'eval':
        return await evalCommand(rest, env, process.stdout);
      case 'data':
        return await dataCommand(rest, env, process.stdout);
      case 'ablate': {
        const { values } = parseArgs({
          args: rest,
          options: { config: { type: 'string' }, seeds: { type: 'string', default: '3' }, from: { type: 'string' }, id: { type: 'string' }, variants: { type: 'string' }, effect: { type: 'string' }, out: { type: 'string' }, storage: { type: 'string' } },
          strict: true,
        });
        if (!values.config) throw new SophiaError('input', '--config is required: a preset (ci, tiny) or a YAML/JSON run config file');
        return await ablateCommand({
          config: configArg(values.config, env),
          seeds: Number(values.seeds),
          from: values.from,
          id: values.id,
          variants: parseVariants(values.variants),
          ...(values.effect !== undefined ? { effect: effectArg(values.effect) } : {}),
          out: values.out === undefined ? undefined : userPath(values.out, env),
          storage: storageArg(values.storage, env),
          env,
          repoRoot: REPO_ROOT,
          out_: process.stdout,
        });
      }
      case 'model':
        return await modelCommand(rest, env, process.stdout);
      case 'trust-grpo': {
        const { values } = parseArgs({ args: rest, options: { json: { type: 'string' } }, strict: true });
        if (values.json === undefined) {
          throw new SophiaError('input', '--json FILE is required: a file with one {"step", "totalSteps", "alpha", "variant", "groups": [{"outcome", "thinking"}]} JSON object');
        }
        await trustGrpoCommand(userPath(values.json, env), process.stdout);
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
  } finally {
    await releaseRuntime();
    await stopTracing();
  }
}
