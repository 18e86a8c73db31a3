/** JSON documents through the storage port (rollouts, rewards, annotations, reports): one place for the encoding. */
import type { Storage } from './types';

export async function getJson<T>(storage: Storage, key: string): Promise<T> {
  return JSON.parse(new TextDecoder().decode(await storage.get(key))) as T;
}

export async function putJson(storage: Storage, key: string, value: unknown): Promise<void> {
  await storage.put(key, new TextEncoder().encode(JSON.stringify(value)), { contentType: 'application/json' });
}
