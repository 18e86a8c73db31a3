/**
 * Two test projects:
 *  - `unit`: pure functions and adapters that need no server (runs anywhere, fast);
 *  - `integration`: tests under `test/integration/` that talk to the real local stack
 *    (Temporal dev server + S3-compatible server started by `npm run stack:up`);
 *  - `faults`: tests under `test/faults/` that kill and restart real processes (workers, servers, the CLI),
 *    each with its own private dev server.
 * `vitest run` runs both and prints one summary; `--project unit|integration` picks one.
 */
import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    projects: [
      {
        test: {
          name: 'unit',
          include: ['**/*.test.ts'],
          exclude: ['node_modules/**', 'dist/**', '.tools/**', '.sophia/**', 'test/integration/**', 'test/faults/**'],
          testTimeout: 60_000,
          env: { AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED: 'true' },
        },
      },
      {
        test: {
          name: 'integration',
          include: ['test/integration/**/*.test.ts'],
          testTimeout: 180_000,
          env: { AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED: 'true' },
          hookTimeout: 120_000,
          // Integration suites share one server; run files one after another so they don't starve 2 cores.
          fileParallelism: false,
        },
      },
      {
        test: {
          name: 'faults',
          include: ['test/faults/**/*.test.ts'],
          testTimeout: 600_000,
          hookTimeout: 120_000,
          env: { AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED: 'true' },
          fileParallelism: false,
        },
      },
    ],
  },
});
