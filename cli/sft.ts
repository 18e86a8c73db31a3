/**
 * `sophia sft --preset ci|tiny`: the tiny world's SFT warmup end to end, in this process: generate the dataset
 * into storage, measure the untrained policy, train with validation and early stopping, commit the best
 * checkpoint, measure again on test and ood, and write the report with plots. (The durable pipeline runs the
 * same steps as Temporal activities.)
 *
 * Its settings are the run preset's (`RUN_PRESETS`: model, data, sft, evaluation), and it trains with the same
 * loop as the pipeline's SFT chunks (`sftLoop`), so `sophia sft --preset ci` and the sftWarmup stage of
 * `sophia run --config ci` train the same weights.
 */
import { loadEngineCheckpoint, saveEngineCheckpoint } from '../activities/engine-checkpoints';
import { tinyWorldSettings } from '../activities/data';
import { RunData } from '../activities/run-data';
import { ConfigError } from '../common/errors';
import { assertSubmittable } from '../config/limits';
import { evaluationSettings, modelConfig, resolveRunConfig, RUN_PRESETS, sftSettings } from '../config/run-config';
import { parameterCount } from '../engine/model/config';
import { createEngine } from '../engine/factory';
import { type EvalReport, evaluate } from '../evaluation/evaluate';
import { writeReport } from '../report/report';
import { CheckpointStore } from '../storage/checkpoints';
import { hashConfig } from '../storage/hashing';
import { assertValidName } from '../storage/keys';
import { openStorage } from '../storage/open';
import { readDatasetManifest, writeDataset } from '../tasks/dataset';
import { runSft } from '../training/sft';
import { buildSftReport } from '../training/sft-report';
import { ProgressBar } from './progress';
import { defaultStorage } from './paths';
import { defaultRunId } from '../common/run-layout';

export interface SftCommandOptions {
  /** A run preset the built-in engine runs (`ci`, `tiny`). */
  preset: string;
  runId: string | undefined;
  storage: string | undefined;
  env: Readonly<Record<string, string | undefined>>;
  repoRoot: string;
  out: NodeJS.WritableStream;
}

export async function sftCommand(options: SftCommandOptions): Promise<number> {
  if (!Object.hasOwn(RUN_PRESETS, options.preset)) {
    throw new ConfigError('--preset', `${JSON.stringify(options.preset)} is not a preset`, { hint: `Use one of ${Object.keys(RUN_PRESETS).join(', ')}` });
  }
  const config = resolveRunConfig(options.preset, `preset ${options.preset}`);
  assertSubmittable(config, options.env);
  const runId = options.runId ?? defaultRunId(new Date(), 'sft');
  assertValidName('run id', runId);
  const say = (line: string) => options.out.write(`${line}\n`);
  const storage = openStorage(options.storage ?? defaultStorage(options.env, options.repoRoot), options.env);
  const store = new CheckpointStore(storage);
  const engine = createEngine({ kind: 'onnx' });
  const started = Date.now();
  try {
    const data = new RunData(storage);
    const tokenizer = data.tokenizer;
    const model = modelConfig(config, tokenizer.vocabSize);
    say(`run        ${runId} (preset ${options.preset}, storage ${storage.location})`);
    const settings = tinyWorldSettings(config);
    const existing = await readDatasetManifest(storage, runId).catch(() => undefined);
    if (existing && hashConfig(existing.settings) === hashConfig(settings)) {
      say('data       reusing the dataset already in storage');
    } else {
      const manifest = await writeDataset(storage, runId, settings);
      say(`data       ${manifest.splits.train.count} train, ${manifest.splits.test.count} test, ${manifest.splits.ood.count} ood examples → runs/${runId}/data/`);
    }
    const [train, test, ood] = [await data.split(runId, 'train'), await data.split(runId, 'test'), await data.split(runId, 'ood')];
    await engine.init(model, config.seed);
    say(`model      policy, ${parameterCount(model).toLocaleString('en-US')} parameters (${config.model.preset})`);
    const evaluation = evaluationSettings(config);

    const measure = async (label: string): Promise<{ test: EvalReport; ood: EvalReport }> => {
      const bar = new ProgressBar(label, test.length + ood.length);
      const t = await evaluate(engine, test, 'test', evaluation, (done) => bar.update(done));
      const o = await evaluate(engine, ood, 'ood', evaluation, (done) => bar.update(test.length + done));
      return { test: t, ood: o };
    };
    const before = await measure('eval (untrained)');

    const bar = new ProgressBar('sft', config.sft.steps);
    const sftStarted = Date.now();
    let lastVal = '';
    const result = await runSft(engine, train, data.validation(config, model.image.size), sftSettings(config), {
      onStep: (s) => bar.update(s.step, `loss ${s.loss.toFixed(3)}${lastVal}`),
      onValidation: (v) => {
        lastVal = ` val ${v.valLoss.toFixed(3)}`;
      },
    });
    const sftSeconds = (Date.now() - sftStarted) / 1000;
    if (!result.bestState) throw new Error('SFT produced no validated state');
    await engine.loadState(result.bestState);
    const checkpoint = await saveEngineCheckpoint(store, engine, {
      runId,
      stage: 'sft',
      step: result.bestStep,
      configHash: hashConfig(config),
      metrics: { valLoss: result.bestValLoss },
    });
    await loadEngineCheckpoint(store, checkpoint.key, engine); // what later stages will do: start from the committed bytes
    const after = await measure('eval (after SFT)');

    const report = buildSftReport({
      runId,
      preset: options.preset,
      parameters: parameterCount(model),
      trainExamples: train.length,
      seconds: { sft: sftSeconds, total: (Date.now() - started) / 1000 },
      sft: result,
      before,
      after,
      checkpointKey: checkpoint.key,
    });
    const written = await writeReport(storage, runId, report, 'sft');
    say('');
    say('family     test untrained → after SFT   ood untrained → after SFT   format (test, after)');
    for (const f of Object.keys(before.test.byFamily)) {
      const p = (x: number) => `${(100 * x).toFixed(0).padStart(3)} %`;
      say(`${f.padEnd(10)} ${p(before.test.byFamily[f]!.accuracy)} → ${p(after.test.byFamily[f]!.accuracy)}              ${p(before.ood.byFamily[f]!.accuracy)} → ${p(after.ood.byFamily[f]!.accuracy)}              ${p(after.test.byFamily[f]!.formatRate)}`);
    }
    say(`report     ${storage.location}/${written.markdown} (+ report.json, ${written.plots.length} plots)`);
    say(`checkpoint ${checkpoint.key}`);
    say(`time       ${((Date.now() - started) / 1000).toFixed(0)} s (SFT ${sftSeconds.toFixed(0)} s)`);
    return 0;
  } finally {
    await engine.dispose();
    await store.close();
    await storage.close();
  }
}
