/**
 * Connections to Temporal from a resolved `TemporalConfig`: the client (CLI, API, tests) and the native
 * connection workers poll with. TLS and Temporal Cloud API keys come from the config; nothing is logged.
 */
import { Client, Connection } from '@temporalio/client';
import { NativeConnection } from '@temporalio/worker';
import { StorageUnavailableError } from '../common/errors';
import { clientInterceptors } from '../observability/tracing';
import type { TemporalConfig } from '../temporal.config';

function unreachable(config: TemporalConfig, err: unknown): StorageUnavailableError {
  const reason = err instanceof Error ? err.message : String(err);
  return new StorageUnavailableError(`cannot reach Temporal at ${config.connection.address}: ${reason}`, {
    cause: err,
    hint: 'Start the local stack (`npm run stack:up`), or set TEMPORAL_ADDRESS to a running server',
  });
}

export async function connectClient(config: TemporalConfig): Promise<Client> {
  const { address, namespace, tls, apiKey } = config.connection;
  try {
    const connection = await Connection.connect({ address, tls, ...(apiKey ? { apiKey } : {}) });
    const interceptors = clientInterceptors();
    return new Client({ connection, namespace, ...(interceptors ? { interceptors } : {}) });
  } catch (err) {
    throw unreachable(config, err);
  }
}

export async function connectWorker(config: TemporalConfig): Promise<NativeConnection> {
  const { address, tls, apiKey } = config.connection;
  try {
    return await NativeConnection.connect({ address, tls, ...(apiKey ? { apiKey } : {}) });
  } catch (err) {
    throw unreachable(config, err);
  }
}
