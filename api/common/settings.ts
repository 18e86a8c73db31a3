/**
 * Injection tokens for what the API is built on (abstract classes double as tokens: no string tokens).
 * `ApiSettings` carries the validated config; the Temporal client and the storage are provided as the
 * `Client` and `Storage` classes themselves (see `app.module.ts`).
 */
import type { TemporalConfig } from '../../temporal.config';
import type { ApiConfig } from '../config';

export abstract class ApiSettings {
  abstract readonly config: ApiConfig;
  abstract readonly temporal: TemporalConfig;
}
