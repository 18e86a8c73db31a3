/**
 * `sophia ablate --config PRESET|FILE --seeds N [--from RUN_ID] [--id ID] [--variants …] [--effect POINTS] [--out DIR]`:
 * the method's ablation (docs/architecture.md §3). Every arm — a variant (`grpo`, `thinking`, `thinking+anneal`,
 * `trust-grpo`, `untrained-rm`), optionally with `@skip` for `rl.emptyGroup: skip` (no thinking reward in groups whose
 * outcome rewards are all equal) and/or `@dynamic` for `rl.dynamicSampling` (DAPO: such groups dropped and more
 * prompts sampled; `grpo@dynamic` is the stronger baseline) — trains from the same SFT checkpoint with the same reward
 * model (the untrained one for `untrained-rm`) on the same dataset, once per seed, the seed's prompts order and sampling the same for every
 * arm. Then a report under `runs/{ID}/reports/ablation/` (and, with `--out`, a local folder):
 *  - mean ± std over seeds of test and ood accuracy per arm, γ, and the share of one-sided groups;
 *  - paired differences (each arm against `grpo`, and `trust-grpo` against `thinking`: the trust weight's own
 *    effect), paired by seed and by test example, with 95 % hierarchical bootstrap intervals and p-values
 *    (evaluation/paired.ts);
 *  - the power: the standard error these seeds and examples give, the power to detect `--effect` points (default 1.5),
 *    and the seeds (or examples) that would take;
 *  - plots of accuracy and γ over RL steps.
 *
 * The shared part comes from `--from RUN_ID` (a finished run with SFT and reward-model stages) or from a base run
 * `{ID}-base` that this command runs first (only its reward model when the config starts at the rewardModel stage
 * from an earlier SFT checkpoint and dataset: `basePlan`). Every run is an ordinary pipeline run (`{ID}-{variant}-s{seed}`), so
 * the command can be killed and started again with the same `--id`: finished runs are reused, a running one is
 * attached to.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import * as path from 'node:path';
import { type LiveProgress, pipelineInput, startRun } from '../clients/runs';
import { SophiaError } from '../common/errors';
import { STORAGE_STAGES, pipelineWorkflowId } from '../common/run-layout';
import { loadRunConfig } from '../config/load';
import { assertSubmittable } from '../config/limits';
import { type RunConfig, mergeConfig, parseRunConfig } from '../config/run-config';
import type { StageName } from '../config/stages';
import { comparePaired, type PairedComparison, powerPlan } from '../evaluation/paired';
import type { EvalReport } from '../evaluation/evaluate';
import { renderLineChart } from '../report/charts';
import { markdownTable, writeReport } from '../report/report';
import { VARIANTS, type Variant } from '../rl/trust';
import { CheckpointStore } from '../storage/checkpoints';
import { assertValidName } from '../storage/keys';
import { type MetricRecord, readMetrics } from '../storage/metrics-log';
import { getJson } from '../storage/json';
import { joinKey, runPrefix } from '../storage/keys';
import { openStorage } from '../storage/open';
import { identifyStore } from '../storage/store-id';
import type { Storage } from '../storage/types';
import { loadTemporalConfig } from '../temporal.config';
import type { WorkerSet } from '../workers/worker';
import { defaultStorage } from './paths';
import { formatSeconds } from './progress';
import { watchRun } from './run';
import { installQuietRuntime, openSession } from './session';
import { runsWorkersHere, startWorkers } from './workers';

type Env = Readonly<Record<string, string | undefined>>;

export interface AblateOptions {
  config: string;
  seeds: number;
  from: string | undefined;
  id: string | undefined;
  variants: Arm[];
  /** The difference to power the comparison for, in accuracy points (default 1.5). */
  effect?: number;
  out: string | undefined;
  storage: string | undefined;
  env: Env;
  repoRoot: string;
  out_: NodeJS.WritableStream;
}

/**
 * One arm of an ablation: a variant, optionally with `rl.emptyGroup: skip` (written `VARIANT@skip`) and with dynamic
 * sampling, `rl.dynamicSampling` (written `VARIANT@dynamic`: `grpo@dynamic` is DAPO-style GRPO); both: `VARIANT@skip@dynamic`.
 */
export interface Arm {
  name: string;
  variant: Variant;
  emptyGroup?: 'skip';
  dynamic?: true;
}

export interface VariantResult {
  /** The arm's name (its variant, or `VARIANT@skip`). */
  variant: string;
  seed: number;
  runId: string;
  testAccuracy: number;
  oodAccuracy: number;
  meanGamma: number;
  distrustedShare: number;
  /** Share of groups whose responses all got the same outcome reward (no mixed group): what `@skip` acts on. */
  oneSidedShare?: number;
  /** Per test (and ood) example, in id order: 1 when the final greedy answer is fully correct. */
  outcomes?: { test: number[]; ood: number[] };
}

export function meanStd(xs: readonly number[]): { mean: number; std: number } {
  const mean = xs.reduce((a, b) => a + b, 0) / xs.length;
  const std = xs.length > 1 ? Math.sqrt(xs.reduce((a, x) => a + (x - mean) ** 2, 0) / (xs.length - 1)) : 0;
  return { mean, std };
}

/** The run id of an arm and seed (`thinking+anneal` → `thinking-anneal`, `trust-grpo@skip` → `trust-grpo-skip`). */
export const variantRunId = (id: string, arm: string, seed: number) => `${id}-${arm.replace(/[+@]/g, '-')}-s${seed}`;

/** The config of one ablation run: RL and final evaluation only, from the shared checkpoints and data. */
export function variantConfig(base: RunConfig, shared: SharedArtifacts, arm: Arm | Variant, seed: number): RunConfig {
  const { name, variant, emptyGroup, dynamic } = typeof arm === 'string' ? { name: arm, variant: arm, emptyGroup: undefined, dynamic: undefined } : arm;
  return parseRunConfig(
    mergeConfig(base, {
      name: `ablation ${name} seed ${seed}`,
      seed: base.seed + 1000 * seed,
      stages: ['trustGrpo', 'evaluation'],
      startFrom: {
        stage: 'trustGrpo',
        checkpointKey: shared.sftKey,
        rewardModelKey: variant === 'untrained-rm' ? shared.rewardModelInitialKey : shared.rewardModelKey,
        dataRunId: shared.dataRunId,
      },
      rl: { variant, ...(emptyGroup ? { emptyGroup } : {}), ...(dynamic ? { dynamicSampling: {} } : {}) },
      evaluation: { k: 0, baseline: false },
    }),
    `ablation ${name} seed ${seed}`,
  );
}

export interface SharedArtifacts {
  dataRunId: string;
  sftKey: string;
  rewardModelKey: string;
  rewardModelInitialKey: string;
}

/** The default difference an ablation is powered for: 1.5 accuracy points (the paper's effects are 1.1–1.4). */
export const DEFAULT_EFFECT = 0.015;

/** The pairs an ablation compares: each arm against the reference (`grpo`), and `trust-grpo` against `thinking`. */
export function comparisons(arms: readonly string[], reference = 'grpo'): [string, string][] {
  const out: [string, string][] = arms.includes(reference) ? arms.filter((a) => a !== reference).map((a): [string, string] => [a, reference]) : [];
  if (arms.includes('trust-grpo') && arms.includes('thinking')) out.push(['trust-grpo', 'thinking']);
  return out;
}

const points = (x: number, digits = 1) => `${x >= 0 ? '+' : '−'}${Math.abs(100 * x).toFixed(digits)}`;

/**
 * The paired differences and the power analysis: per pair and split, Δ (points) with its 95 % bootstrap interval and
 * p-value over the seeds both arms ran, and what these seeds and examples can detect.
 */
export function pairedSection(results: readonly VariantResult[], effect: number): { markdown: string; json: Record<string, unknown>[] } {
  const arms = [...new Set(results.map((r) => r.variant))];
  const rows: string[][] = [];
  const powerRows: string[][] = [];
  const json: Record<string, unknown>[] = [];
  for (const [a, b] of comparisons(arms)) {
    for (const split of ['test', 'ood'] as const) {
      const pairs = results
        .filter((r) => r.variant === a && r.outcomes)
        .flatMap((ra) => {
          const rb = results.find((r) => r.variant === b && r.seed === ra.seed && r.outcomes);
          return rb && ra.outcomes![split].length > 0 ? [{ seed: ra.seed, a: ra.outcomes![split], b: rb.outcomes![split] }] : [];
        });
      if (pairs.length === 0) continue;
      const c: PairedComparison = comparePaired(pairs);
      const plan = powerPlan(c, effect);
      const significant = c.interval[0] > 0 || c.interval[1] < 0;
      rows.push([`${a} − ${b}`, split, points(c.difference), `[${points(c.interval[0])}, ${points(c.interval[1])}]`, c.pValue < 0.001 ? '< 0.001' : c.pValue.toFixed(3), significant ? 'yes' : 'no', String(c.seeds), String(c.examples)]);
      // One seed cannot tell training noise from the rest: no power analysis from it.
      if (c.seeds < 2) {
        powerRows.push([`${a} − ${b}`, split, ...Array<string>(8).fill('—')]);
        json.push({ pair: [a, b], split, ...c });
        continue;
      }
      powerRows.push([
        `${a} − ${b}`,
        split,
        (100 * Math.sqrt(c.components.seed)).toFixed(2),
        (100 * Math.sqrt(c.components.example)).toFixed(1),
        (100 * Math.sqrt(c.components.residual)).toFixed(1),
        (100 * plan.standardError).toFixed(2),
        `${(100 * plan.achievedPower).toFixed(0)} %`,
        (100 * plan.detectableEffect).toFixed(1),
        Number.isFinite(plan.seedsNeeded) ? String(plan.seedsNeeded) : 'more examples first',
        Number.isFinite(plan.examplesNeeded) ? String(plan.examplesNeeded) : 'more seeds first',
      ]);
      json.push({ pair: [a, b], split, ...c, power: plan });
    }
  }
  if (rows.length === 0) return { markdown: '', json };
  const pct = (100 * effect).toFixed(1);
  const markdown =
    `## Paired differences\n\nΔ = accuracy of the first arm − the second, in points, paired by seed (same SFT start, prompts ` +
    `and test examples) and by example; 95 % interval from a crossed bootstrap (seeds and examples drawn independently, the ` +
    `same examples for every seed: training and evaluation noise both counted; conservative, as their interaction counts at ` +
    `both levels), 10,000 resamples; p: two-sided bootstrap p-value of Δ = 0.\n\n` +
    `${markdownTable(['pair', 'split', 'Δ (points)', '95 % interval', 'p', 'interval excludes 0', 'seeds', 'examples'], rows)}\n\n` +
    `## Power\n\nWhat these seeds and examples can detect (normal approximation, α = 0.05 two-sided, power 0.8; with few seeds it ` +
    `is optimistic). Variance components of Δ per seed and example (evaluation/paired.ts): σ seed, how much a seed shifts every ` +
    `example (training noise); σ example, how consistently an example favours one arm; σ residual, seed × example. SE: the ` +
    `standard error of Δ, √(σ²seed/n + σ²example/m + σ²residual/(n m)). "Seeds for ${pct}": seeds needed to detect ${pct} points ` +
    `at this many examples; "examples for ${pct}": examples needed at this many seeds. (—: one seed, which cannot tell ` +
    `training noise from the rest.)\n\n` +
    markdownTable(['pair', 'split', 'σ seed (points)', 'σ example (points)', 'σ residual (points)', 'SE (points)', `power for ${pct} points`, 'detectable (points)', `seeds for ${pct}`, `examples for ${pct}`], powerRows);
  return { markdown, json };
}

/** Builds the ablation table and plots from the variant runs' results and metrics. */
export function ablationReport(id: string, results: readonly VariantResult[], metrics: ReadonlyMap<string, readonly MetricRecord[]>, shared: SharedArtifacts, command: string, effect = DEFAULT_EFFECT) {
  const variants = [...new Set(results.map((r) => r.variant))];
  const pm = (xs: number[]) => {
    const { mean, std } = meanStd(xs);
    return `${(100 * mean).toFixed(1)} ± ${(100 * std).toFixed(1)}`;
  };
  const rows = variants.map((v) => {
    const rs = results.filter((r) => r.variant === v);
    return [
      v,
      pm(rs.map((r) => r.testAccuracy)),
      pm(rs.map((r) => r.oodAccuracy)),
      rs.map((r) => (100 * r.testAccuracy).toFixed(1)).join(' / '),
      rs.map((r) => (100 * r.oodAccuracy).toFixed(1)).join(' / '),
      meanStd(rs.map((r) => r.meanGamma)).mean.toFixed(3),
      (100 * meanStd(rs.map((r) => r.distrustedShare)).mean).toFixed(1),
      rs.every((r) => r.oneSidedShare !== undefined) ? (100 * meanStd(rs.map((r) => r.oneSidedShare!)).mean).toFixed(1) : '—',
    ];
  });
  const table = markdownTable(['variant', 'test accuracy % (mean ± std)', 'ood accuracy % (mean ± std)', 'test per seed', 'ood per seed', 'mean γ', 'groups with γ < 1 (%)', 'one-sided groups (%)'], rows);
  const paired = pairedSection(results, effect);
  /** Mean over seeds of a per-step field, per variant. */
  const curve = (v: string, kind: string, field: string): [number, number][] => {
    const bySteps = new Map<number, number[]>();
    for (const r of results.filter((x) => x.variant === v)) {
      for (const m of metrics.get(r.runId) ?? []) {
        if (m.stage === STORAGE_STAGES.grpo && m.kind === kind && typeof m[field] === 'number') bySteps.set(m.step, [...(bySteps.get(m.step) ?? []), m[field]]);
      }
    }
    return [...bySteps.entries()].sort((a, b) => a[0] - b[0]).map(([step, xs]) => [step, meanStd(xs).mean]);
  };
  const smooth = (points: [number, number][], window = 10): [number, number][] =>
    points.map(([x], i) => {
      const slice = points.slice(Math.max(0, i - window + 1), i + 1);
      return [x, slice.reduce((a, p) => a + p[1], 0) / slice.length];
    });
  const plots = [
    {
      name: 'accuracy-test',
      title: 'Test accuracy during RL (periodic greedy evaluation, mean over seeds)',
      chart: renderLineChart({ title: 'Test accuracy during RL', xLabel: 'RL step', yLabel: 'accuracy', series: variants.map((v) => ({ name: v, points: curve(v, 'eval', 'testAccuracy') })) }),
    },
    {
      name: 'accuracy-ood',
      title: 'OOD accuracy during RL (mean over seeds)',
      chart: renderLineChart({ title: 'OOD accuracy during RL', xLabel: 'RL step', yLabel: 'accuracy', series: variants.map((v) => ({ name: v, points: curve(v, 'eval', 'oodAccuracy') })) }),
    },
    {
      name: 'gamma',
      title: 'Trust weight γ per RL step (mean over groups and seeds, moving average of 10 steps)',
      chart: renderLineChart({ title: 'Trust weight γ', xLabel: 'RL step', yLabel: 'mean γ', series: variants.map((v) => ({ name: v, points: smooth(curve(v, 'step', 'gamma')) })) }),
    },
    {
      name: 'train-accuracy',
      title: 'Rollout accuracy per RL step (training prompts, moving average of 10 steps)',
      chart: renderLineChart({ title: 'Rollout accuracy', xLabel: 'RL step', yLabel: 'share of correct rollouts', series: variants.map((v) => ({ name: v, points: smooth(curve(v, 'step', 'accuracy')) })) }),
    },
  ];
  const seeds = new Set(results.map((r) => r.seed)).size;
  const markdown =
    `Made by \`${command}\`. Every variant starts from the same SFT checkpoint (\`${shared.sftKey}\`) with the same ` +
    `reward model (\`${shared.rewardModelKey}\`; \`untrained-rm\` uses its untrained initial weights \`${shared.rewardModelInitialKey}\`) ` +
    `on the dataset of run \`${shared.dataRunId}\`, ${seeds} seed(s) each (the seed changes the RL prompt order and sampling). ` +
    `Accuracy: greedy, on the full test and ood splits, after the last RL step.\n\n${table}\n` +
    (paired.markdown ? `\n${paired.markdown}\n` : '');
  return {
    title: `Ablation — ${id}`,
    markdown,
    json: { id, shared, results, command, effect, comparisons: paired.json },
    plots,
  };
}

/**
 * The command that made an ablation, as its report names it, for another machine to run again: the config as a path
 * inside the repository when it is one, the arms, and the effect when not the default.
 */
export function ablationCommandLine(options: Pick<AblateOptions, 'config' | 'seeds' | 'from' | 'variants' | 'effect' | 'repoRoot'>, id: string): string {
  const inside = path.relative(options.repoRoot, options.config);
  const config = path.isAbsolute(options.config) && !inside.startsWith('..') && !path.isAbsolute(inside) ? inside : options.config;
  const parts = [`sophia ablate --config ${config} --seeds ${options.seeds}`];
  if (options.from) parts.push(`--from ${options.from}`);
  parts.push(`--variants ${options.variants.map((a) => a.name).join(',')}`, `--id ${id}`);
  if (options.effect !== undefined && options.effect !== DEFAULT_EFFECT) parts.push(`--effect ${Number((100 * options.effect).toPrecision(6))}`);
  return parts.join(' ');
}

/**
 * What the base run `{ID}-base` does: the data, SFT warmup and reward model; or, when the ablation's config starts
 * from an SFT checkpoint (`startFrom: { stage: rewardModel, checkpointKey, dataRunId }`: a new reward model over an
 * earlier ablation's SFT policy and dataset), the reward model alone, with that checkpoint and dataset shared.
 */
export function basePlan(base: RunConfig): { stages: StageName[]; sft?: Pick<SharedArtifacts, 'sftKey' | 'dataRunId'> } {
  const from = base.startFrom;
  if (from?.stage !== 'rewardModel') return { stages: ['prepareData', 'sftWarmup', 'rewardModel'] };
  if (!from.checkpointKey || !from.dataRunId) {
    throw new SophiaError('input', 'startFrom: an ablation that starts at the rewardModel stage needs the SFT checkpoint and the dataset it trained on', {
      hint: 'Set startFrom: { stage: rewardModel, checkpointKey: runs/RUN/sft/checkpoints/STEP, dataRunId: RUN }',
    });
  }
  return { stages: ['rewardModel'], sft: { sftKey: from.checkpointKey, dataRunId: from.dataRunId } };
}

async function sharedFrom(
  runId: string,
  deps: { storage: Storage; client: Parameters<typeof startRun>[0]; deployment: string },
  sft?: Pick<SharedArtifacts, 'sftKey' | 'dataRunId'>,
): Promise<SharedArtifacts> {
  const handle = deps.client.workflow.getHandle(pipelineWorkflowId(deps.deployment, runId));
  const result = (await handle.result()) as LiveProgress;
  const sftKey = sft?.sftKey ?? result.checkpoints.sftWarmup;
  const rewardModelKey = result.checkpoints.rewardModel;
  if (result.status !== 'completed' || !sftKey || !rewardModelKey) {
    throw new SophiaError('input', `--from ${runId}: the run must have completed its sftWarmup and rewardModel stages (status ${result.status})`, {
      hint: 'Give a run made with a config that has a rewardModel section, or leave --from out to run the shared stages here',
    });
  }
  const store = new CheckpointStore(deps.storage);
  const init = await store.latest(runId, 'rm-init');
  if (!init) throw new SophiaError('not-found', `--from ${runId}: no committed untrained reward model (stage rm-init) in ${deps.storage.location}`);
  return { dataRunId: sft?.dataRunId ?? runId, sftKey, rewardModelKey, rewardModelInitialKey: init.key };
}

export async function ablateCommand(options: AblateOptions): Promise<number> {
  const { env } = options;
  const out = options.out_;
  const say = (line: string) => out.write(`${line}\n`);
  const base = loadRunConfig(options.config);
  assertSubmittable(base, env);
  if (!base.rewardModel || !base.rl) throw new SophiaError('input', `--config ${options.config}: an ablation needs rewardModel and rl sections`, { hint: 'Use the tiny or ci preset, or a file that extends one' });
  if (!Number.isInteger(options.seeds) || options.seeds < 1 || options.seeds > 20) throw new SophiaError('input', `--seeds ${options.seeds}: give an integer from 1 to 20`);
  loadTemporalConfig(env);
  const id = options.id ?? `ablate-${(options.from ?? options.config).replace(/[^A-Za-z0-9._-]/g, '-').slice(0, 60)}`;
  assertValidName('run id', id);
  const storage = openStorage(options.storage ?? defaultStorage(env, options.repoRoot), env);
  installQuietRuntime();
  const session = await openSession(env, options.repoRoot);
  let workers: WorkerSet | undefined;
  try {
    say(`temporal   ${session.describe()}`);
    say(`storage    ${storage.location}`);
    const store = await identifyStore(storage);
    if (runsWorkersHere(undefined, session)) workers = await startWorkers(session, storage);
    const running = workers?.run();
    const runOne = async (runId: string, config: RunConfig): Promise<LiveProgress> => {
      const { handle, state } = await startRun(session.client, session.config, pipelineInput(runId, config, store, session.config));
      say(`run        ${runId} (${state})`);
      const progress = await watchRun(session.client, runId, say, 1000, () => handle.result(), { temporal: session.config });
      if (progress.status !== 'completed') throw new SophiaError('input', `run ${runId} ${progress.status}: ${progress.error ?? ''}`);
      return progress;
    };
    try {
      let fromRun = options.from;
      const baseRun = basePlan(base);
      if (!fromRun) {
        fromRun = `${id}-base`;
        say(baseRun.sft ? `shared     reward model in run ${fromRun}, over SFT ${baseRun.sft.sftKey}` : `shared     SFT warmup and reward model in run ${fromRun}`);
        await runOne(fromRun, parseRunConfig(mergeConfig(base, { stages: baseRun.stages }), 'ablation base'));
      }
      const shared = await sharedFrom(fromRun, { storage, client: session.client, deployment: session.config.deployment }, options.from ? undefined : baseRun.sft);
      say(`shared     SFT ${shared.sftKey}; reward model ${shared.rewardModelKey}; untrained ${shared.rewardModelInitialKey}`);
      const plan = Array.from({ length: options.seeds }, (_, s) => options.variants.map((arm) => ({ arm, seed: s + 1 }))).flat();
      const results: VariantResult[] = [];
      const metrics = new Map<string, MetricRecord[]>();
      const started = Date.now();
      for (const [i, { arm, seed }] of plan.entries()) {
        const runId = variantRunId(id, arm.name, seed);
        const eta = i > 0 ? ` (~${formatSeconds(((Date.now() - started) / 1000 / i) * (plan.length - i))} left)` : '';
        say(`ablation   ${i + 1}/${plan.length}: ${arm.name}, seed ${seed}${eta}`);
        const progress = await runOne(runId, variantConfig(base, shared, arm, seed));
        const records = await readMetrics(storage, runId);
        metrics.set(runId, records);
        const steps = records.filter((m) => m.stage === STORAGE_STAGES.grpo && m.kind === 'step');
        const avg = (field: string) => steps.reduce((a, m) => a + Number(m[field] ?? 1), 0) / Math.max(1, steps.length);
        results.push({
          variant: arm.name,
          seed,
          runId,
          testAccuracy: progress.results.evaluation?.testAccuracy ?? Number.NaN,
          oodAccuracy: progress.results.evaluation?.oodAccuracy ?? Number.NaN,
          meanGamma: avg('gamma'),
          distrustedShare: avg('distrustedShare'),
          ...(steps.some((m) => typeof m.mixedGroupShare === 'number') ? { oneSidedShare: 1 - avg('mixedGroupShare') } : {}),
          outcomes: { test: await outcomesOf(storage, runId, 'test'), ood: await outcomesOf(storage, runId, 'ood') },
        });
      }
      const command = ablationCommandLine(options, id);
      const report = ablationReport(id, results, metrics, shared, command, options.effect ?? DEFAULT_EFFECT);
      const written = await writeReport(storage, id, report, 'ablation');
      say(`report     ${storage.location}/${written.markdown}`);
      if (options.out) {
        mkdirSync(options.out, { recursive: true });
        for (const key of [written.markdown, written.json, ...written.plots, ...written.plots.map((p) => p.replace(/\.png$/, '.svg'))]) {
          writeFileSync(path.join(options.out, path.basename(key)), await storage.get(key));
        }
        say(`copied     to ${options.out}`);
      }
      say(report.markdown.split('\n').slice(2).join('\n'));
      return 0;
    } finally {
      workers?.shutdown();
      await running;
    }
  } finally {
    await session.close();
    await storage.close();
  }
}

/** The final evaluation's per-example correctness of a run's split, in example-id order (empty when it has none). */
async function outcomesOf(storage: Storage, runId: string, split: 'test' | 'ood'): Promise<number[]> {
  const report = await getJson<EvalReport>(storage, joinKey(runPrefix(runId), 'eval', 'final', `${split}.json`));
  return [...report.examples].sort((x, y) => (x.id < y.id ? -1 : x.id > y.id ? 1 : 0)).map((e) => (e.reward >= 1 ? 1 : 0));
}

const ARM_OPTIONS = ['skip', 'dynamic'] as const;

/** `--variants`: variants, each optionally with `@skip` and/or `@dynamic` (see `Arm`); default every variant. */
export function parseVariants(list: string | undefined): Arm[] {
  if (list === undefined) return VARIANTS.map((variant) => ({ name: variant, variant }));
  return list.split(',').map((entry) => {
    const name = entry.trim();
    const [variant, ...options] = name.split('@');
    if (!(VARIANTS as readonly string[]).includes(variant!) || options.some((o) => !(ARM_OPTIONS as readonly string[]).includes(o)) || new Set(options).size !== options.length) {
      throw new SophiaError('input', `--variants: ${JSON.stringify(name)} is not a variant; use some of ${VARIANTS.join(', ')}, each optionally with @skip (rl.emptyGroup: skip) and @dynamic (rl.dynamicSampling)`);
    }
    return { name, variant: variant as Variant, ...(options.includes('skip') ? { emptyGroup: 'skip' as const } : {}), ...(options.includes('dynamic') ? { dynamic: true as const } : {}) };
  });
}
