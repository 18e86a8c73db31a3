/**
 * `sophia model upload DIR s3://BUCKET/PREFIX`: puts a Hugging Face model directory where a torch run can name it
 * (`engine.model: s3://BUCKET/PREFIX`), with the manifest every worker verifies its download against
 * (storage/model-cache.ts): each file is hashed as it is written, the manifest `sophia-model.json` goes last.
 */
import { SophiaError } from '../common/errors';
import { MODEL_MANIFEST, uploadModel } from '../storage/model-cache';
import { userPath } from './paths';

type Env = Readonly<Record<string, string | undefined>>;

export const MODEL_USAGE = `usage: sophia model upload DIR s3://BUCKET/PREFIX
  uploads a Hugging Face model directory (config.json, weights, processor files; hidden entries such as .cache/
  skipped) and then its manifest ${MODEL_MANIFEST} (each file's size and sha256). A run config names it as
  engine.model (or engine.rewardModel): s3://BUCKET/PREFIX; workers download it once into SOPHIA_MODEL_CACHE and
  verify it. A prefix that already holds a model is refused: upload a changed model under a new prefix.
  S3 settings: SOPHIA_S3_ENDPOINT, SOPHIA_S3_ACCESS_KEY_ID, SOPHIA_S3_SECRET_ACCESS_KEY, … (README.md)`;

const size = (n: number) => (n >= 1024 ** 3 ? `${(n / 1024 ** 3).toFixed(1)} GiB` : n >= 1024 ** 2 ? `${(n / 1024 ** 2).toFixed(1)} MiB` : `${(n / 1024).toFixed(1)} KiB`);

/** `args`: what follows `sophia model`. Returns the exit code; bad input throws a `SophiaError` (exit 2). */
export async function modelCommand(args: string[], env: Env, out: NodeJS.WritableStream): Promise<number> {
  const [action, ...rest] = args;
  if (action === undefined || action === 'help' || action === '--help' || action === '-h') {
    out.write(`${MODEL_USAGE}\n`);
    return action === undefined ? 2 : 0;
  }
  if (action !== 'upload') throw new SophiaError('input', `model ${JSON.stringify(action)}: the only model command is upload`, { hint: MODEL_USAGE });
  if (rest.length !== 2) throw new SophiaError('input', `model upload needs DIR and s3://BUCKET/PREFIX (got ${rest.length} arguments)`, { hint: MODEL_USAGE });
  const [dir, uri] = rest as [string, string];
  let files = 0;
  let bytes = 0;
  const manifest = await uploadModel(userPath(dir, env), uri, {
    env,
    onFile: (file) => {
      files++;
      bytes += file.size;
      out.write(`  ${file.path}  ${size(file.size)}  sha256 ${file.sha256.slice(0, 12)}…\n`);
    },
  });
  const where = uri.replace(/\/+$/, '');
  out.write(`${where}: ${files} files, ${size(bytes)}, then ${MODEL_MANIFEST} (${manifest.files.length} entries).\nName it in a run config: engine: { kind: torch, model: ${where} }\n`);
  return 0;
}
