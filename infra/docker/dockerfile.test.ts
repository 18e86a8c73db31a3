/**
 * infra/docker/Dockerfile without Docker (there is none where this was written): the stages, the entry point, the
 * non-root user, the npm install without onnxruntime's CUDA download, and a GPU stage that makes the PyTorch engine's
 * venv the way workers look for it (engine/torch/venv.ts) with the gpu profile.
 */
import { existsSync, readFileSync } from 'node:fs';
import * as path from 'node:path';
import { describe, expect, it } from 'vitest';

const ROOT = path.resolve(__dirname, '..', '..');
// How workers find the engine's venv (engine/torch/venv.ts; read, not imported: engine internals stay in engine/).
const venvTs = readFileSync(path.join(ROOT, 'engine', 'torch', 'venv.ts'), 'utf8');
const INSTALL_COMMAND = /export const INSTALL_COMMAND = '([^']+)'/.exec(venvTs)?.[1];
const TORCH_VENV_NAME = /export const TORCH_VENV_NAME = '([^']+)'/.exec(venvTs)?.[1];
const text = readFileSync(path.join(ROOT, 'infra', 'docker', 'Dockerfile'), 'utf8');
const ignore = readFileSync(path.join(ROOT, 'infra', 'docker', 'Dockerfile.dockerignore'), 'utf8')
  .split('\n')
  .filter((l) => l && !l.startsWith('#'));

/** The stages in order, each with its instructions (continuation lines joined). */
function stages(): { name: string; from: string; lines: string[] }[] {
  const out: { name: string; from: string; lines: string[] }[] = [];
  const joined = text.replace(/\\\n\s*/g, ' ');
  for (const line of joined.split('\n')) {
    const from = /^FROM (\S+) AS (\S+)$/.exec(line);
    if (from) out.push({ name: from[2]!, from: from[1]!, lines: [] });
    else if (line.trim() && !line.startsWith('#')) out.at(-1)?.lines.push(line.trim());
  }
  return out;
}

describe('Dockerfile infra/docker/Dockerfile', () => {
  const all = stages();
  const stage = (name: string) => all.find((s) => s.name === name)!;

  it('builds in stages, the runtime image last (the default target)', () => {
    expect(all.map((s) => s.name)).toEqual(['build', 'base', 'gpu', 'runtime']);
    expect(stage('gpu').from).toBe('base');
    expect(stage('runtime').from).toBe('base');
  });

  it('installs the npm packages from the lock without onnxruntime\'s CUDA download, production only', () => {
    const build = stage('build').lines;
    expect(build).toContain('COPY package.json package-lock.json ./');
    expect(build.find((l) => l.includes('npm ci'))).toMatch(/ONNXRUNTIME_NODE_INSTALL=skip npm ci --omit=dev/);
    expect(stage('base').lines).toContain('COPY --from=build /app/node_modules ./node_modules');
    // The packages the CLI needs at run time are dependencies, not devDependencies (--omit=dev drops those).
    const pkg = JSON.parse(readFileSync(path.join(ROOT, 'package.json'), 'utf8')) as { dependencies: Record<string, string>; bin: Record<string, string> };
    for (const dep of ['tsx', '@temporalio/worker', '@nestjs/core', '@aws-sdk/client-s3', 'onnxruntime-node']) expect(pkg.dependencies).toHaveProperty(dep);
    expect(pkg.bin.sophia).toBe('bin/sophia.js');
  });

  it('runs `node bin/sophia.js` as a non-root user in both images', () => {
    for (const name of ['gpu', 'runtime']) {
      const lines = stage(name).lines;
      expect(lines).toContain('ENTRYPOINT ["node", "bin/sophia.js"]');
      const user = lines.filter((l) => l.startsWith('USER ')).at(-1);
      expect(user, name).toMatch(/^USER [1-9]\d*:[1-9]\d*$/);
    }
    expect(stage('base').lines.join('\n')).toMatch(/useradd .*--uid 10001/);
    expect(existsSync(path.join(ROOT, 'bin', 'sophia.js'))).toBe(true);
  });

  it('gives the GPU image Python and the PyTorch engine\'s venv with the gpu profile, where workers look', () => {
    const gpu = stage('gpu').lines.join('\n');
    expect(gpu).toMatch(/apt-get install .*python3 python3-venv/);
    expect(INSTALL_COMMAND).toBe('bash infra/local/install-torch.sh');
    expect(gpu).toContain(`SOPHIA_TORCH_PROFILE=gpu PYTHON=python3 ${INSTALL_COMMAND}`);
    expect(gpu).toMatch(/ENV SOPHIA_TORCH_PROFILE=gpu/);
    // The venv lands in $SOPHIA_TOOLS_DIR/torch-venv: the build context leaves the host's .tools out, and the
    // image does not move SOPHIA_TOOLS_DIR away from the default the workers read (infra/local/defaults.env).
    expect(TORCH_VENV_NAME).toBe('torch-venv');
    expect(text).not.toMatch(/SOPHIA_TOOLS_DIR=/);
    expect(readFileSync(path.join(ROOT, 'infra', 'local', 'defaults.env'), 'utf8')).toMatch(/^SOPHIA_TOOLS_DIR=\.tools$/m);
    expect(existsSync(path.join(ROOT, 'infra', 'local', 'install-torch.sh'))).toBe(true);
  });

  it('leaves installed packages, tools, local data and the Compose secrets out of the build context', () => {
    expect(ignore).toEqual(expect.arrayContaining(['node_modules', '.tools', '.sophia', '.git', 'infra/compose/.env', 'infra/compose/secrets']));
  });
});
