/**
 * The one way a `sophia` command runs workers in its own process (`run`, `worker`, `api`, `ablate`): the same
 * Temporal settings, storage and activity registrations everywhere.
 */
import type { WorkerKind } from '../activities/registry';
import type { Storage } from '../storage/types';
import { WorkerSet } from '../workers/worker';
import type { Session } from './session';

/** Whether a command runs workers here: when asked (`--workers`), and by default when the server is embedded (nobody else would). */
export function runsWorkersHere(flag: boolean | undefined, session: Session): boolean {
  return flag ?? session.embedded !== undefined;
}

export async function startWorkers(session: Session, storage: Storage, kinds: readonly WorkerKind[] = ['cpu', 'gpu']): Promise<WorkerSet> {
  return WorkerSet.create({ kinds, connection: await session.workerConnection(), config: session.config, storage });
}
