/**
 * The prompt-level engine contract (engine/engine.contract.ts) on the PyTorch engine: a tiny random Qwen2.5-VL
 * (`python -m sophia_torch.tiny_qwen`, 256 positions) built once into a temp folder, float32 on CPU, each engine
 * its own process. Skipped, with the reason in the suite's name, when the venv is missing (install it with
 * `bash infra/local/install-torch.sh`; npm test installs it first).
 *
 * One torch thread per engine: this model's ops are too small to gain from a second, and with up to three engines
 * computing at once on 2 busy cores, two threads each made the suite 64–72 s instead of 26–28 s (the threads spin
 * waiting for each other). Engines with two threads: process.test.ts (a new process continues a saved state with
 * the same losses) and engine.test.ts (loadState in a new process after a SIGKILL gives the same logprobs).
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { describeEngineContract } from '../engine.contract';
import { promptMicroConfig } from '../testing/contract-fixtures';
import { buildTinyQwen } from '../testing/tiny-qwen';
import { INSTALL_COMMAND, torchInstall } from './venv';

const install = torchInstall();
let dir: string | undefined;

describeEngineContract(
  'torch (cpu, float32, tiny Qwen2.5-VL)',
  { kind: 'torch', device: 'cpu', dtype: 'float32', threads: 1 },
  () => {
    dir = mkdtempSync(path.join(tmpdir(), 'sophia-torch-contract-'));
    const model = path.join(dir, 'model');
    buildTinyQwen(model, { maxPositions: 256 });
    return {
      policy: { kind: 'policy', pretrained: model },
      reward: { kind: 'reward', pretrained: model },
      foreign: promptMicroConfig('policy'),
      // The Qwen2-VL image processor's smallest image: 56 × 56 pixels (4 image tokens after merging).
      imageSize: 56,
      logprobTolerance: 1e-5,
      byteEqualFiles: true,
    };
  },
  {
    skip: install.ok ? undefined : `${install.reason}; install it with \`${INSTALL_COMMAND}\``,
    cleanup: () => {
      if (dir) rmSync(dir, { recursive: true, force: true });
    },
    testTimeoutMs: 240_000,
  },
);
