/**
 * Request validation with the DTOs' zod schemas (`@Body({ schema })`, `@Query({ schema })`, `@Param(name,
 * { schema })`): a failure is a 400 whose `field` is the first offending location (`body.config.seed`,
 * `query.limit`, `path.id`) and whose `issues` list all of them. Before the schema, a body is searched for the
 * keys that address an object's prototype (`__proto__`, `constructor`, `prototype`): JSON.parse makes them
 * ordinary own keys, which a merge or copy could turn into prototype writes, so they are refused by name.
 */
import { type ArgumentMetadata, Injectable, type PipeTransform } from '@nestjs/common';
import type { StandardSchemaV1 } from '@standard-schema/spec';
import { ApiError } from './errors';

const RESERVED_KEYS = new Set(['__proto__', 'constructor', 'prototype']);

/** The path (`overrides.__proto__`) of the first reserved key in a parsed JSON value, if any (no recursion: any depth). */
export function reservedKeyPath(value: unknown): string | undefined {
  const pending: { value: unknown; path: string[] }[] = [{ value, path: [] }];
  for (let next = pending.pop(); next; next = pending.pop()) {
    if (typeof next.value !== 'object' || next.value === null) continue;
    for (const key of Object.keys(next.value)) {
      const path = [...next.path, key];
      if (RESERVED_KEYS.has(key)) return path.join('.');
      pending.push({ value: (next.value as Record<string, unknown>)[key], path });
    }
  }
  return undefined;
}

function pathOf(issue: StandardSchemaV1.Issue): string {
  return (issue.path ?? []).map((p) => String(typeof p === 'object' ? p.key : p)).join('.');
}

@Injectable()
export class SchemaValidationPipe implements PipeTransform {
  async transform(value: unknown, metadata: ArgumentMetadata): Promise<unknown> {
    const schema = (metadata as ArgumentMetadata & { schema?: StandardSchemaV1 }).schema;
    if (!schema || metadata.type === 'custom') return value;
    const where = metadata.type === 'param' ? `path${metadata.data ? `.${metadata.data}` : ''}` : metadata.type === 'query' ? `query${metadata.data ? `.${metadata.data}` : ''}` : 'body';
    const reserved = metadata.type === 'body' ? reservedKeyPath(value) : undefined;
    if (reserved !== undefined) {
      throw new ApiError(400, `body.${reserved}`, `body.${reserved}: "${reserved.split('.').at(-1)}" is a reserved key (it addresses an object's prototype); remove it`);
    }
    const result = await schema['~standard'].validate(value);
    if (!result.issues) return result.value;
    const issues = result.issues.map((issue) => {
      const at = pathOf(issue);
      return { field: at ? `${where}.${at}` : where, message: issue.message };
    });
    const first = issues[0]!;
    throw new ApiError(400, first.field, issues.map((i) => `${i.field}: ${i.message}`).join('; '), issues);
  }
}
