/**
 * The cached workflow bundle (workers/workflow-bundle.ts): its key follows every source file and the interceptor
 * modules, not tests or docs; a cached bundle is used as it is; changed code builds and keeps a new one.
 */
import { mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import * as path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { workflowBundle, workflowBundleKey } from './workflow-bundle';

// Inside the repository, so that the bundler finds the SDK's packages in its node_modules.
const scratch = path.join(__dirname, '..', '.sophia');
mkdirSync(scratch, { recursive: true });
const root = mkdtempSync(path.join(scratch, 'bundle-test-'));
afterAll(() => rmSync(root, { recursive: true, force: true }));
const write = (rel: string, text: string) => {
  mkdirSync(path.dirname(path.join(root, rel)), { recursive: true });
  writeFileSync(path.join(root, rel), text);
};
const workflowsPath = path.join(root, 'workflows');
write('workflows/index.ts', "import { greeting } from '../common/greeting';\nexport async function greet(): Promise<string> {\n  return greeting;\n}\n");
write('common/greeting.ts', "export const greeting = 'hello';\n");
write('package-lock.json', '{"lockfileVersion": 3}\n');
const key = (interceptorModules: string[] = []) => workflowBundleKey({ workflowsPath, root, interceptorModules });

describe('workflowBundleKey', () => {
  it('changes with any source file, the lock file and the interceptor modules; not with tests, docs or hidden folders', async () => {
    const first = await key();
    expect(await key()).toBe(first);
    write('common/greeting.test.ts', 'test');
    write('docs/notes.md', 'notes');
    write('test/integration/x.ts', 'export {};');
    write('.sophia/storage/x.json', '{}');
    expect(await key()).toBe(first);
    expect(await key(['/somewhere/interceptors.js'])).not.toBe(first);
    write('package-lock.json', '{"lockfileVersion": 3, "packages": {}}\n');
    const lockChanged = await key();
    expect(lockChanged).not.toBe(first);
    write('config/other.ts', 'export const x = 1;\n'); // a new file the workflows might import
    expect(await key()).not.toBe(lockChanged);
  });
});

describe('workflowBundle', () => {
  it('keeps the bundle it built, uses it while the code is unchanged, and builds a new one when it changes', async () => {
    const cacheDir = path.join(root, '.sophia', 'cache', 'workflow-bundles');
    const built = await workflowBundle({ workflowsPath, root, cacheDir });
    expect(built.code).toContain("'hello'");
    const cached = path.join(cacheDir, `${await key()}.js`);
    expect(readdirSync(cacheDir)).toEqual([path.basename(cached)]);
    // The kept file is what the next start runs (marked here to tell it from a rebuild).
    writeFileSync(cached, `${built.code}\n// kept`);
    expect((await workflowBundle({ workflowsPath, root, cacheDir })).code.endsWith('// kept')).toBe(true);
    write('common/greeting.ts', "export const greeting = 'bonjour';\n");
    const rebuilt = await workflowBundle({ workflowsPath, root, cacheDir });
    expect(rebuilt.code).toContain("'bonjour'");
    expect(rebuilt.code).not.toContain('// kept');
    expect(readdirSync(cacheDir).sort()).toEqual([path.basename(cached), `${await key()}.js`].sort());
  }, 120_000);

  it('bundles every time when the cache folder cannot be written', async () => {
    const blocked = path.join(root, 'not-a-folder');
    writeFileSync(blocked, 'a file where the cache folder would be');
    expect((await workflowBundle({ workflowsPath, root, cacheDir: path.join(blocked, 'bundles') })).code).toContain('greet');
  }, 120_000);
});
