/**
 * Turns Sophia's errors into Temporal failures with explicit retryability (house rule 7, docs/architecture.md §6).
 *
 * Temporal retries any activity error unless told otherwise. A `SophiaError` knows whether retrying can help
 * (`retryable`); this wrapper converts it into an `ApplicationFailure` whose `type` is the error class name and
 * whose `nonRetryable` flag follows the error, so a bad config or a corrupt checkpoint fails the activity at
 * once with its message, while a storage timeout is retried with backoff.
 */
import { ApplicationFailure } from '@temporalio/common';
import { SophiaError } from '../common/errors';

export function toApplicationFailure(err: unknown): unknown {
  if (err instanceof ApplicationFailure || !(err instanceof SophiaError)) return err;
  return ApplicationFailure.create({
    type: err.name,
    message: err.message,
    nonRetryable: !err.retryable,
    cause: err,
    details: [{ category: err.category, hint: err.hint ?? null }],
  });
}

type AsyncFn = (...args: never[]) => Promise<unknown>;

/** Wraps every activity of a group so that thrown `SophiaError`s become properly typed failures. */
export function withFailureMapping<T extends Record<string, AsyncFn>>(activities: T): T {
  const wrapped: Record<string, AsyncFn> = {};
  for (const [name, fn] of Object.entries(activities)) {
    const activity = async (...args: never[]) => {
      try {
        return await fn(...args);
      } catch (err) {
        throw toApplicationFailure(err);
      }
    };
    Object.defineProperty(activity, 'name', { value: name });
    wrapped[name] = activity;
  }
  return wrapped as T;
}
