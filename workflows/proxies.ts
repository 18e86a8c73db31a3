/**
 * The workflows' activity proxies, typed by placement (`activities/registry.ts`): a CPU proxy offers only what CPU
 * workers register, a GPU proxy only what GPU workers register, a local proxy only the local activities. Stages
 * take their proxies from here, never from `proxyActivities<SomeGroup>` directly.
 */
import { type ActivityOptions, proxyActivities, proxyLocalActivities } from '@temporalio/workflow';
import type { ActivitiesOn } from '../activities/registry';
import { toActivityOptions, toLocalActivityOptions } from '../temporal.config';
import type { ActivityProfiles } from './types';

/** Activities on the shared CPU queue (the local ones too: older histories scheduled them there). */
export type CpuActivities = ActivitiesOn<'cpu' | 'local'>;
export type GpuActivities = ActivitiesOn<'gpu'>;
export type LocalActivities = ActivitiesOn<'local'>;

/** CPU activities with the CPU profile's options (`overrides`: an activity that may run longer, e.g. a dataset read). */
export function cpuActivities(profiles: Pick<ActivityProfiles, 'cpu'>, overrides: Partial<ActivityOptions> = {}) {
  return proxyActivities<CpuActivities>({ ...toActivityOptions(profiles.cpu), ...overrides });
}

/** GPU activities with the given options (the shared GPU queue's profile, or a pinned worker's queue). */
export function gpuActivities(options: ActivityOptions) {
  return proxyActivities<GpuActivities>(options);
}

export function localActivities(profiles: Pick<ActivityProfiles, 'cpu'>) {
  return proxyLocalActivities<LocalActivities>(toLocalActivityOptions(profiles.cpu));
}
