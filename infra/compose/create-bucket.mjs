// One-shot service of compose.yaml: creates the bucket named by SOPHIA_STORAGE (s3://BUCKET[/PREFIX]) on the S3
// server at SOPHIA_S3_ENDPOINT with SOPHIA_S3_ACCESS_KEY_ID / SOPHIA_S3_SECRET_ACCESS_KEY, retrying while the server
// starts. Sophia asks for the bucket before a run starts (HeadBucket) and never creates it itself.
// Runs in the Sophia image: `node infra/compose/create-bucket.mjs` from /app (its node_modules has the AWS SDK).
import { CreateBucketCommand, HeadBucketCommand, S3Client } from '@aws-sdk/client-s3';

const env = process.env;
const match = /^s3:\/\/([^/]+)/.exec(env.SOPHIA_STORAGE ?? '');
if (!match) {
  console.error(`SOPHIA_STORAGE must be s3://BUCKET[/PREFIX]; got ${JSON.stringify(env.SOPHIA_STORAGE)}`);
  process.exit(2);
}
const bucket = match[1];
const client = new S3Client({
  endpoint: env.SOPHIA_S3_ENDPOINT,
  region: env.SOPHIA_S3_REGION || 'us-east-1',
  forcePathStyle: true,
  credentials: { accessKeyId: env.SOPHIA_S3_ACCESS_KEY_ID ?? '', secretAccessKey: env.SOPHIA_S3_SECRET_ACCESS_KEY ?? '' },
});
const deadline = Date.now() + 120_000;
for (;;) {
  try {
    await client.send(new HeadBucketCommand({ Bucket: bucket }));
    console.log(`bucket ${bucket} is there at ${env.SOPHIA_S3_ENDPOINT}`);
    process.exit(0);
  } catch (err) {
    const status = err?.$metadata?.httpStatusCode;
    if (status === 403) {
      console.error(`S3 at ${env.SOPHIA_S3_ENDPOINT} refuses SOPHIA_S3_ACCESS_KEY_ID / SOPHIA_S3_SECRET_ACCESS_KEY (403): the s3 service and .env disagree`);
      process.exit(1);
    }
    try {
      if (status === 404) {
        await client.send(new CreateBucketCommand({ Bucket: bucket }));
        continue; // HeadBucket again: the filer may need a moment
      }
    } catch (createErr) {
      err = createErr;
    }
    if (Date.now() > deadline) {
      console.error(`could not create bucket ${bucket} at ${env.SOPHIA_S3_ENDPOINT}: ${err?.name ?? ''} ${err?.message ?? err}`);
      process.exit(1);
    }
    await new Promise((resolve) => setTimeout(resolve, 1000));
  }
}
