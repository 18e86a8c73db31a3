/**
 * A store's identity: a marker object at its root, `.sophia/store.json` = `{ id, createdAt }`, whose id the first
 * client to start a run there draws at random.
 *
 * A location string (`local:/data/sophia`, `s3://bucket/prefix`) says where a store is as seen from one machine, not
 * which store it is: the same folder path on two machines, one bucket name behind two S3 endpoints, or a folder wiped
 * and created again are different stores with one location. The id tells them apart. A client records it in the run's
 * pipeline input (`PipelineInput.storeId`, through `identifyStore`), and every activity checks that the store its
 * worker opened has that id before it writes (`activities/run-data.ts`).
 *
 * The marker is created with a conditional put (put-if-absent: an atomic link for a folder, `If-None-Match: *` for S3),
 * so clients starting runs on a new store at the same moment agree on one id: the first writer's.
 */
import { randomBytes } from 'node:crypto';
import { AlreadyExistsError, NotFoundError, StorageConfigError } from '../common/errors';
import type { Storage } from './types';

/** Where the marker lives, relative to the storage root (a prefix for S3). */
export const STORE_MARKER_KEY = '.sophia/store.json';

/** A store as a run records it: where it is, and which store that was. */
export interface StoreIdentity {
  location: string;
  /** 32 lowercase hex digits (128 random bits). */
  id: string;
}

/** The marker object's content. */
interface StoreMarker {
  id: string;
  /** When the marker was created (ISO 8601), for people looking at a store. */
  createdAt: string;
}

const STORE_ID_RE = /^[0-9a-f]{32}$/;

function corruptMarker(storage: Storage, reason: string): StorageConfigError {
  return new StorageConfigError(`the store marker ${storage.location}/${STORE_MARKER_KEY} is not valid (${reason})`, {
    hint: `Restore it from a backup, or delete it so that the next run gives the store a new id (runs started on this store before then will then refuse to write to it)`,
  });
}

/** The store's id, or undefined when it has no marker yet. Throws `StorageConfigError` (not retryable) for a marker that is not one. */
export async function readStoreId(storage: Storage): Promise<string | undefined> {
  let bytes: Uint8Array;
  try {
    bytes = await storage.get(STORE_MARKER_KEY);
  } catch (err) {
    if (err instanceof NotFoundError) return undefined;
    throw err;
  }
  let marker: unknown;
  try {
    marker = JSON.parse(new TextDecoder().decode(bytes));
  } catch {
    throw corruptMarker(storage, 'not JSON');
  }
  const id = typeof marker === 'object' && marker !== null && !Array.isArray(marker) ? (marker as Partial<StoreMarker>).id : undefined;
  if (typeof id !== 'string' || !STORE_ID_RE.test(id)) throw corruptMarker(storage, 'its "id" is not 32 hexadecimal digits');
  return id;
}

/** The store's identity, creating its marker first if it has none (concurrent callers get the same id). */
export async function identifyStore(storage: Storage, now: Date = new Date()): Promise<StoreIdentity> {
  const existing = await readStoreId(storage);
  if (existing) return { location: storage.location, id: existing };
  const marker: StoreMarker = { id: randomBytes(16).toString('hex'), createdAt: now.toISOString() };
  try {
    await storage.put(STORE_MARKER_KEY, new TextEncoder().encode(`${JSON.stringify(marker)}\n`), { ifAbsent: true, contentType: 'application/json' });
    return { location: storage.location, id: marker.id };
  } catch (err) {
    if (!(err instanceof AlreadyExistsError)) throw err;
  }
  // Another client created it between our read and our write: its id is the store's.
  const id = await readStoreId(storage);
  if (!id) throw corruptMarker(storage, 'it was created and then deleted while this client read it');
  return { location: storage.location, id };
}
