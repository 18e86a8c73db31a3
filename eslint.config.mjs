// Lint rules that protect the architecture (docs/architecture.md §2; house rules 1, 2 and 11 in §6):
//  - workflow files are deterministic sandboxes: no Node built-ins, no worker/client/activity runtime
//    imports, activities only as types, no `process`;
//  - promises are never left floating (a floating activity call silently loses its result);
//  - no import cycles, no wildcard re-exports.
import { builtinModules } from 'node:module';
import js from '@eslint/js';
import tseslint from 'typescript-eslint';
import { importX, createNodeResolver } from 'eslint-plugin-import-x';

const nodeBuiltins = [...builtinModules, ...builtinModules.map((m) => `node:${m}`)];

// The engine seam (engine/README.md): outside engine/, code knows engines only through the `Engine` protocol
// (engine/types.ts) and `createEngine` (engine/factory.ts), never an engine's state format or internals.
const engineInternals = {
  group: ['**/engine/state', '**/engine/onnx-engine', '**/engine/onnx/**', '**/engine/onnx-bench', '**/engine/torch/**'],
  message: 'Use the Engine protocol (engine/types.ts) and createEngine (engine/factory.ts); engine internals stay inside engine/ (bench/ may use engine/onnx-bench).',
};

export default tseslint.config(
  { ignores: ['node_modules/**', 'dist/**', '.tools/**', '.sophia/**', '**/*.js', '**/*.cjs', '**/*.mjs'] },
  js.configs.recommended,
  ...tseslint.configs.recommendedTypeChecked,
  {
    languageOptions: {
      parserOptions: { projectService: true, tsconfigRootDir: import.meta.dirname },
    },
    plugins: { 'import-x': importX },
    settings: {
      'import-x/resolver-next': [createNodeResolver({ extensions: ['.ts', '.js', '.json'] })],
    },
    rules: {
      '@typescript-eslint/no-floating-promises': 'error',
      '@typescript-eslint/no-misused-promises': 'error',
      '@typescript-eslint/consistent-type-imports': ['error', { fixStyle: 'inline-type-imports' }],
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_' }],
      'import-x/no-cycle': ['error', { ignoreExternal: true }],
      'import-x/no-self-import': 'error',
      'no-restricted-syntax': [
        'error',
        { selector: 'ExportAllDeclaration', message: 'Name what you re-export (house rule 11, docs/architecture.md §6): no `export *`.' },
      ],
    },
  },
  {
    files: ['**/*.ts'],
    ignores: ['engine/**'],
    rules: { 'no-restricted-imports': ['error', { patterns: [engineInternals] }] },
  },
  {
    // Engines compute; storing their files is the activities' business (activities/engine-checkpoints.ts).
    files: ['engine/**/*.ts'],
    rules: { 'no-restricted-imports': ['error', { patterns: [{ group: ['**/storage', '**/storage/**'], message: 'engine/ does not import storage/: return files from saveState and let activities store them.' }] }] },
  },
  {
    // The benchmarks time the ONNX engine itself: they reach its internals through engine/onnx-bench only.
    files: ['bench/**/*.ts'],
    rules: { 'no-restricted-imports': ['error', { patterns: [{ ...engineInternals, group: engineInternals.group.filter((g) => !g.endsWith('onnx-bench')) }] }] },
  },
  {
    files: ['workflows/**/*.ts'],
    rules: {
      'no-restricted-imports': [
        'error',
        {
          paths: nodeBuiltins.map((name) => ({
            name,
            message: 'Workflow code runs in a deterministic sandbox: do I/O in an activity instead.',
          })),
          patterns: [
            engineInternals,
            {
              group: ['@temporalio/worker', '@temporalio/client', '@temporalio/activity', '@temporalio/testing'],
              message: 'Workflows may import only @temporalio/workflow and @temporalio/common.',
            },
            {
              group: ['**/activities', '**/activities/**', '**/storage', '**/storage/**', '**/workers/**', '**/cli/**'],
              allowTypeImports: true,
              message: 'Cross the workflow boundary with types only: `import type` from activities (house rule 2, docs/architecture.md §6).',
            },
          ],
        },
      ],
      'no-restricted-globals': [
        'error',
        { name: 'process', message: 'No environment in workflows: pass values in the workflow input.' },
        { name: 'Buffer', message: 'Buffer is a Node built-in; use Uint8Array or move the work to an activity.' },
      ],
    },
  },
  {
    files: ['**/*.test.ts', 'test/**/*.ts', 'bench/**/*.ts'],
    rules: {
      '@typescript-eslint/no-non-null-assertion': 'off',
      '@typescript-eslint/unbound-method': 'off',
    },
  },
);
