/**
 * The activity registry against the code on both sides of it:
 *  - every activity call site in `workflows/` (found with the TypeScript checker: a call whose method is declared in
 *    an activity group under `activities/`) names an activity that a worker of its placement registers;
 *  - the workers' registrations (`activitiesFor`, what `WorkerSet` registers) are exactly the registry's, from the real
 *    activity factories, and a group function without a placement is refused.
 * This is the check that would have caught `sophia stop` during RL calling `checkpointPolicy`, which no worker registered.
 */
import * as path from 'node:path';
import ts from 'typescript';
import { describe, expect, it } from 'vitest';
import { createDataActivities } from './data';
import { createEvaluationActivities } from './evaluation';
import { createModelLineActivities } from './model-lines';
import { ACTIVITY_PLACEMENT, type ActivityName, WORKER_PLACEMENTS, type WorkerKind, activitiesFor, activityNamesFor } from './registry';
import { createRewardModelActivities } from './reward-model';
import { createRlActivities } from './rl';
import { createSmokeActivities } from './smoke';
import { createTrackingActivities } from './tracking';
import { createTrainingActivities } from './training';

const root = path.resolve(__dirname, '..');

interface CallSite {
  name: string;
  where: string;
}

/** Every call in `workflows/` of a method declared in `activities/` (through a proxy of any kind). */
function activityCallSites(): CallSite[] {
  const config = ts.getParsedCommandLineOfConfigFile(path.join(root, 'tsconfig.json'), {}, { ...ts.sys, onUnRecoverableConfigFileDiagnostic: () => undefined })!;
  const files = config.fileNames.filter((f) => f.startsWith(path.join(root, 'workflows') + path.sep) && !f.endsWith('.test.ts'));
  const program = ts.createProgram(files, config.options);
  const checker = program.getTypeChecker();
  const activitiesDir = path.join(root, 'activities') + path.sep;
  const sites: CallSite[] = [];
  for (const file of files) {
    const source = program.getSourceFile(file)!;
    const visit = (node: ts.Node) => {
      if (ts.isCallExpression(node) && ts.isPropertyAccessExpression(node.expression)) {
        const symbol = checker.getSymbolAtLocation(node.expression.name);
        const declared = symbol?.declarations?.some((d) => path.resolve(d.getSourceFile().fileName).startsWith(activitiesDir));
        if (declared) {
          const { line } = source.getLineAndCharacterOfPosition(node.getStart());
          sites.push({ name: node.expression.name.text, where: `${path.relative(root, file)}:${line + 1}` });
        }
      }
      ts.forEachChild(node, visit);
    };
    visit(source);
  }
  return sites;
}

/** The real activity groups, built over placeholder ports (the factories only close over them). */
function allGroups() {
  const deps = {} as never;
  return {
    ...createDataActivities(deps),
    ...createModelLineActivities(deps),
    ...createTrackingActivities(deps),
    ...createTrainingActivities(deps),
    ...createEvaluationActivities(deps),
    ...createRewardModelActivities(deps),
    ...createRlActivities(deps),
    ...createSmokeActivities(deps),
  };
}

const kindOf = (placement: string): WorkerKind => (Object.keys(WORKER_PLACEMENTS) as WorkerKind[]).find((k) => WORKER_PLACEMENTS[k].includes(placement as never))!;

describe('activity registry', () => {
  it('every activity a workflow calls is registered by a worker of its placement', () => {
    const sites = activityCallSites();
    const names = new Set(sites.map((s) => s.name));
    // The walker sees the calls (so this test can fail): the stop path's commit and the engine and CPU steps.
    for (const expected of ['checkpointPolicy', 'runSftChunk', 'rolloutStep', 'computeAdvantages', 'latestCheckpoint', 'prepareData', 'writeRunReport']) {
      expect(names, `call sites found: ${[...names].join(', ')}`).toContain(expected);
    }
    for (const site of sites) {
      const placement = ACTIVITY_PLACEMENT[site.name as ActivityName];
      expect(placement, `${site.where}: ${site.name} has no placement in activities/registry.ts`).toBeDefined();
      expect(activityNamesFor(kindOf(placement)), `${site.where}: no ${kindOf(placement)} worker registers ${site.name}`).toContain(site.name);
    }
  }, 60_000);

  it('workers register exactly the registry, from the real activity groups', () => {
    const groups = allGroups();
    const cpu = Object.keys(activitiesFor('cpu', groups));
    const gpu = Object.keys(activitiesFor('gpu', groups));
    expect(new Set([...cpu, ...gpu])).toEqual(new Set(Object.keys(groups)));
    expect(cpu.filter((n) => gpu.includes(n))).toEqual([]);
    expect(gpu).toContain('checkpointPolicy');
    expect(cpu).toEqual(expect.arrayContaining(['outcomeRewards', 'computeAdvantages', 'latestCheckpoint']));
    for (const name of gpu) expect(ACTIVITY_PLACEMENT[name as ActivityName]).toBe('gpu');
  });

  it('refuses an activity without a placement, and a placement without an activity', () => {
    const groups = allGroups();
    expect(() => activitiesFor('gpu', { ...groups, trainFaster: () => Promise.resolve(1) })).toThrow(/without a placement.*trainFaster/);
    const { checkpointPolicy: _dropped, ...missing } = groups;
    expect(() => activitiesFor('gpu', missing)).toThrow(/places checkpointPolicy on gpu, but no activity group implements it/);
  });
});
