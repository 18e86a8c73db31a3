/**
 * The run report's "Data" section, from the run's dataset manifest: what the run trained and was tested on — the tiny
 * world's generated splits, or a real dataset's source with the adapters' read report (rows read and kept, skipped
 * rows per reason, the first ones by file and row) and its examples per split and family.
 */
import { isSourced } from '../datasets/run-dataset';
import type { DatasetManifest } from '../tasks/dataset';
import { SPLITS } from '../tasks/types';
import { markdownTable } from './report';

export function dataSection(manifest: DatasetManifest<unknown>): { markdown: string; json: Record<string, unknown> } {
  const families = [...new Set(SPLITS.flatMap((s) => Object.keys(manifest.splits[s].byFamily)))];
  const table = markdownTable(
    ['split', 'examples', ...families],
    SPLITS.map((s) => [s, String(manifest.splits[s].count), ...families.map((f) => String(manifest.splits[s].byFamily[f] ?? 0))]),
  );
  const counts = Object.fromEntries(SPLITS.map((s) => [s, { count: manifest.splits[s].count, byFamily: manifest.splits[s].byFamily }]));
  if (!isSourced(manifest.settings)) {
    return { markdown: `## Data\n\nThe tiny world, generated from the run's seed (the ood split is harder: more objects, bars and digits).\n\n${table}`, json: { data: { splits: counts } } };
  }
  const { source } = manifest.settings;
  const read = manifest.read;
  const lines = [`## Data\n\n${source.format} dataset at \`${source.location}\`${source.files ? ` (files ${source.files.map((f) => `\`${f}\``).join(', ')})` : ''}; test: ${(100 * source.testShare).toFixed(1)} % of the examples by a hash of their id; no ood split (see the benchmarks).`];
  if (read) {
    const bad = read.read - read.kept;
    lines.push(`${read.read} rows read in ${read.files.length} file${read.files.length === 1 ? '' : 's'}, ${read.kept} kept, ${bad} skipped${read.resizedImages > 0 ? `; ${read.resizedImages} images shrunk to images.maxPixels` : ''}.`);
    if (bad > 0) {
      lines.push(markdownTable(['skipped because', 'rows'], Object.entries(read.bad).map(([reason, n]) => [reason, String(n)])));
      lines.push(`First skipped rows:\n\n${read.examples.map((e) => `- ${e.file} row ${e.row}: ${e.reason} (${e.detail})`).join('\n')}`);
    }
  }
  lines.push(table);
  return { markdown: lines.join('\n\n'), json: { data: { source, read, splits: counts } } };
}
