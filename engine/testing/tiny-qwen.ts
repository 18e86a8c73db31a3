/**
 * A tiny random Qwen2.5-VL for tests, in engine/ and outside it (`python -m sophia_torch.tiny_qwen`, built from configs: no
 * downloads, ~5 s): where the PyTorch engine's venv is installed, `buildTinyQwen` writes one into `dir`; where it is
 * not, `torchSkipReason` says why, for a suite's name.
 */
import { execFileSync } from 'node:child_process';
import { INSTALL_COMMAND, torchInstall } from '../torch/venv';

/** Undefined when the PyTorch engine is installed; else why torch tests skip and how to install it. */
export function torchSkipReason(env: Readonly<Record<string, string | undefined>> = process.env): string | undefined {
  const install = torchInstall(env);
  return install.ok ? undefined : `${install.reason}; install it with \`${INSTALL_COMMAND}\``;
}

/**
 * Writes a tiny random Qwen2.5-VL (or, with `textOnly`, a Qwen2ForCausalLM) in Hugging Face format into `dir`;
 * `maxPositions` bounds its sequences (default: the builder's own).
 */
export function buildTinyQwen(dir: string, options: { seed?: number; maxPositions?: number; textOnly?: boolean } = {}): string {
  const install = torchInstall();
  if (!install.ok) throw new Error(`buildTinyQwen: ${install.reason}; install it with \`${INSTALL_COMMAND}\``);
  const args = ['-m', 'sophia_torch.tiny_qwen', dir, '--seed', String(options.seed ?? 0)];
  if (options.maxPositions !== undefined) args.push('--max-positions', String(options.maxPositions));
  if (options.textOnly) args.push('--text-only');
  execFileSync(install.python, args, { stdio: ['ignore', 'ignore', 'pipe'] });
  return dir;
}

/** The PyTorch engine venv's python, to check results with plain transformers (no Sophia code). */
export function torchVenvPython(): string {
  const install = torchInstall();
  if (!install.ok) throw new Error(`${install.reason}; install it with \`${INSTALL_COMMAND}\``);
  return install.python;
}
