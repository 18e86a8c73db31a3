/**
 * Streaming parquet rows with hyparquet (pure JS): the footer is read first, then one row group at a time through
 * ranged reads, so memory holds one row group (Hugging Face writes image datasets in row groups of about 100 rows),
 * never the file.
 *
 * Byte arrays are read as bytes (`utf8: false`): columns marked as strings still decode to strings, while an `Image`
 * feature's `bytes` field stays a Uint8Array. Codecs beyond snappy (zstd, gzip, brotli, lz4: what pyarrow or polars
 * may write) come from hyparquet-compressors.
 */
import { type AsyncBuffer, parquetMetadataAsync, parquetReadObjects } from 'hyparquet';
import { compressors } from 'hyparquet-compressors';
import { SophiaError } from '../common/errors';
import type { DatasetFiles } from './files';

/** First read of a footer (hyparquet reads more when the metadata is larger): small, so that it is not a whole small file. */
const FOOTER_FETCH_BYTES = 64 * 1024;

/** A hyparquet file view over ranged reads of one data file. */
export function asyncBufferOf(files: DatasetFiles, file: string, size: number): AsyncBuffer {
  return {
    byteLength: size,
    slice: async (start: number, end?: number) => {
      const bytes = await files.read(file, start, end ?? size);
      // hyparquet wants an ArrayBuffer of exactly the range; a Buffer may be a view into a larger pool (and
      // Buffer#slice is a view too), so copy unless it is already exact.
      if (bytes.byteOffset === 0 && bytes.byteLength === bytes.buffer.byteLength) return bytes.buffer as ArrayBuffer;
      const copy = new Uint8Array(bytes.byteLength);
      copy.set(bytes);
      return copy.buffer;
    },
  };
}

/** Rows of one parquet file as plain objects, row group by row group. */
export async function* parquetRows(files: DatasetFiles, file: string, size: number): AsyncGenerator<Record<string, unknown>> {
  const buffer = asyncBufferOf(files, file, size);
  let metadata;
  try {
    metadata = await parquetMetadataAsync(buffer, { initialFetchSize: FOOTER_FETCH_BYTES });
  } catch (err) {
    throw new SophiaError('corrupt', `${files.location}/${file} is not a readable parquet file: ${(err as Error).message}`, {
      hint: 'Check that the file is complete (a partial download has no footer) or remove it from the dataset',
      cause: err,
    });
  }
  let rowStart = 0;
  for (const group of metadata.row_groups) {
    const rowEnd = rowStart + Number(group.num_rows);
    const rows = await parquetReadObjects({ file: buffer, metadata, rowStart, rowEnd, utf8: false, compressors });
    for (const row of rows) yield row as Record<string, unknown>;
    rowStart = rowEnd;
  }
}
