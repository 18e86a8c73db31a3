/**
 * Request validation with the DTOs' zod schemas (`@Body({ schema })`, `@Query({ schema })`, `@Param(name,
 * { schema })`): a failure is a 400 whose `field` is the first offending location (`body.config.seed`,
 * `query.limit`, `path.id`) and whose `issues` list all of them.
 */
import { type ArgumentMetadata, Injectable, type PipeTransform } from '@nestjs/common';
import type { StandardSchemaV1 } from '@standard-schema/spec';
import { ApiError } from './errors';

function pathOf(issue: StandardSchemaV1.Issue): string {
  return (issue.path ?? []).map((p) => String(typeof p === 'object' ? p.key : p)).join('.');
}

@Injectable()
export class SchemaValidationPipe implements PipeTransform {
  async transform(value: unknown, metadata: ArgumentMetadata): Promise<unknown> {
    const schema = (metadata as ArgumentMetadata & { schema?: StandardSchemaV1 }).schema;
    if (!schema || metadata.type === 'custom') return value;
    const where = metadata.type === 'param' ? `path${metadata.data ? `.${metadata.data}` : ''}` : metadata.type === 'query' ? `query${metadata.data ? `.${metadata.data}` : ''}` : 'body';
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
