/**
 * A process that downloads a model into a cache and stops dead once the first bytes have arrived (its event loop
 * blocked), so test/integration/model-cache.test.ts can SIGKILL it mid-download, as a crash would.
 *
 *   node -e "require('tsx/cjs/api').register(); require('…/model-cache-child.ts')" s3://BUCKET/PREFIX CACHE_DIR
 *   (S3 settings from the environment)
 */
import { resolveModel } from '../../storage/model-cache';

const [uri, cacheDir] = process.argv.slice(-2) as [string, string];
let started = false;
void resolveModel(uri, {
  cacheDir,
  env: process.env,
  concurrency: 1,
  onProgress: () => {
    if (started) return;
    started = true;
    process.stdout.write('downloading\n'); // synchronous on a pipe (Linux)
    Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 120_000);
  },
});
