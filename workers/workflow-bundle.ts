/**
 * The workflow bundle a CPU worker runs, built once per version of the code and kept on disk.
 *
 * Bundling `workflows/` (webpack) costs a worker seconds of CPU at every start: a restarted worker, every `sophia run`
 * and every reference run of the tests paid it again for the same code. The bundle is now kept under
 * `{SOPHIA_HOME}/cache/workflow-bundles/{key}.js`, where the key hashes everything the bundle can depend on: every
 * source file of the project outside tests (the workflows import the config, the registry and more, and a type-only
 * import costs nothing to hash), `package-lock.json` (the packages bundled in), the Temporal SDK's version and the
 * workflow interceptor modules (tracing). Any change to any of them makes a new key, so a cached bundle is always the
 * one the current code would build. A cache that cannot be written (a read-only install) only means bundling each time.
 */
import { createHash, randomBytes } from 'node:crypto';
import { mkdir, readFile, readdir, rename, rm, writeFile } from 'node:fs/promises';
import * as path from 'node:path';
import { bundleWorkflowCode, type WorkflowBundle } from '@temporalio/worker';

/** The repository root (this file is in `workers/`). */
const REPO_ROOT = path.join(__dirname, '..');
/** Folders that hold no source the workflows can import (hidden folders, `.tools`, `.sophia`, `.git`, are skipped too). */
const NOT_SOURCE = new Set(['node_modules', 'test', 'docs', 'bench', 'dist', 'infra']);
const SOURCE_FILE = /\.(ts|mts|cts|js|mjs|cjs|json)$/;

export interface WorkflowBundleOptions {
  /** The folder of the workflow sources (its `index`). */
  workflowsPath: string;
  /** Workflow interceptor modules bundled in (tracing's, when the process traces). */
  interceptorModules?: readonly string[];
  /** Where bundles are kept; undefined: bundle every time. */
  cacheDir?: string | undefined;
  /** Hashed tree (default: the repository); tests point it at a copy. */
  root?: string;
}

async function sourceFiles(root: string, dir = ''): Promise<string[]> {
  const entries = await readdir(path.join(root, dir), { withFileTypes: true });
  const files: string[] = [];
  for (const e of entries.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0))) {
    const rel = dir ? `${dir}/${e.name}` : e.name;
    if (e.isDirectory()) {
      if (!NOT_SOURCE.has(rel) && !e.name.startsWith('.')) files.push(...(await sourceFiles(root, rel)));
    } else if (e.isFile() && SOURCE_FILE.test(e.name) && !/\.test\.[a-z]+$/.test(e.name)) {
      files.push(rel);
    }
  }
  return files;
}

/** The cache key of the bundle the code under `root` builds with these interceptor modules. */
export async function workflowBundleKey(options: Pick<WorkflowBundleOptions, 'workflowsPath' | 'interceptorModules' | 'root'>): Promise<string> {
  const root = options.root ?? REPO_ROOT;
  const hash = createHash('sha256');
  const sdk = JSON.parse(await readFile(require.resolve('@temporalio/worker/package.json'), 'utf8')) as { version: string };
  hash.update(`sdk ${sdk.version}\0workflows ${path.relative(root, options.workflowsPath)}\0interceptors ${(options.interceptorModules ?? []).join(',')}\0`);
  for (const rel of await sourceFiles(root)) {
    hash.update(`${rel}\0`);
    hash.update(await readFile(path.join(root, rel)));
    hash.update('\0');
  }
  return hash.digest('hex').slice(0, 32);
}

/**
 * The workflow bundle: the cached one for the current code, else a new one, kept for the next start. Concurrent
 * starts may both bundle; each writes a file of its own and renames it into place, so a reader never sees half a file.
 */
export async function workflowBundle(options: WorkflowBundleOptions): Promise<WorkflowBundle> {
  const build = () =>
    bundleWorkflowCode({
      workflowsPath: options.workflowsPath,
      workflowInterceptorModules: [...(options.interceptorModules ?? [])],
      logger: { log() {}, trace() {}, debug() {}, info() {}, warn() {}, error() {} },
    });
  if (!options.cacheDir) return build();
  const file = path.join(options.cacheDir, `${await workflowBundleKey(options)}.js`);
  try {
    return { code: await readFile(file, 'utf8') };
  } catch {
    // Not built for this code yet.
  }
  const bundle = await build();
  const partial = `${file}.${process.pid}-${randomBytes(4).toString('hex')}.partial`;
  try {
    await mkdir(options.cacheDir, { recursive: true });
    await writeFile(partial, bundle.code);
    await rename(partial, file);
  } catch {
    await rm(partial, { force: true }).catch(() => undefined);
  }
  return bundle;
}
