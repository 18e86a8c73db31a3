/**
 * Benchmark copies for tests, written in the published layouts: ChartQA's test parquet (`image` as the struct
 * `{bytes, path}` Hugging Face writes for an Image feature, `query`, `label` as a list of strings, `human_or_machine`
 * as the int64 class label), with generated images.
 */
import { parquetWriteBuffer } from 'hyparquet-writer';
import { noisePng } from '../../datasets/testing/fixtures';

// A type, not an interface: rows are also read as plain records (Record<string, unknown>).
export type ChartQaFixtureRow = {
  image: { bytes: Uint8Array | null; path: string | null };
  query: string;
  label: string[];
  human_or_machine: bigint;
};

/** Two answerable rows (one human, one machine) and one whose image has no bytes. */
export function chartQaRows(): ChartQaFixtureRow[] {
  return [
    { image: { bytes: noisePng(90, 60, 1), path: 'a.png' }, query: 'What is the highest value?', label: ['45'], human_or_machine: 0n },
    { image: { bytes: noisePng(70, 70, 2), path: 'b.png' }, query: 'Which year is lowest?', label: ['2019'], human_or_machine: 1n },
    { image: { bytes: null, path: 'missing.png' }, query: 'No image here?', label: ['1'], human_or_machine: 0n },
  ];
}

export function chartQaParquet(rows: readonly ChartQaFixtureRow[]): Uint8Array {
  const text = (name: string) => ({ name, type: 'BYTE_ARRAY' as const, converted_type: 'UTF8' as const, repetition_type: 'OPTIONAL' as const });
  return new Uint8Array(
    parquetWriteBuffer({
      columnData: [
        { name: 'image', data: rows.map((r) => r.image) },
        { name: 'query', data: rows.map((r) => r.query) },
        { name: 'label', data: rows.map((r) => r.label) },
        { name: 'human_or_machine', data: rows.map((r) => r.human_or_machine) },
      ],
      schema: [
        { name: 'root', num_children: 4 },
        { name: 'image', repetition_type: 'OPTIONAL', num_children: 2 },
        { name: 'bytes', type: 'BYTE_ARRAY', repetition_type: 'OPTIONAL' },
        text('path'),
        text('query'),
        { name: 'label', repetition_type: 'OPTIONAL', converted_type: 'LIST', num_children: 1 },
        { name: 'list', repetition_type: 'REPEATED', num_children: 1 },
        text('element'),
        { name: 'human_or_machine', type: 'INT64', repetition_type: 'OPTIONAL' },
      ],
    }),
  );
}
