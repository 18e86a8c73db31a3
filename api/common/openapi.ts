/**
 * OpenAPI from the DTOs' zod schemas. The decorators below put each route's body, query, path and response
 * schemas into the document, converted with zod's own JSON Schema output (OpenAPI 3.0 dialect). They do not
 * rely on TypeScript's emitted decorator metadata, which the project's TypeScript runner (esbuild) does not
 * produce.
 */
import { applyDecorators } from '@nestjs/common';
import { ApiBody, ApiParam, ApiQuery, ApiResponse } from '@nestjs/swagger';
import { z } from 'zod';
import { ErrorBodySchema } from './dto';

type Json = Record<string, unknown>;

function openApiSchema(schema: z.ZodType, io: 'input' | 'output' = 'output'): Json {
  const json = z.toJSONSchema(schema, { target: 'openapi-3.0', io, unrepresentable: 'any' }) as Json;
  delete json.$schema;
  return json;
}

/** A route's JSON body; such a route also answers 415 to a body of another type (api/app.ts). */
export function ApiBodyFrom(schema: z.ZodType) {
  return applyDecorators(
    ApiBody({ schema: openApiSchema(schema, 'input') as never }),
    ApiResponse({ status: 415, description: 'The body is not JSON (Content-Type: application/json)', content: { 'application/json': { schema: openApiSchema(ErrorBodySchema) } } }),
  );
}

/** One query parameter per property of an object schema. */
export function ApiQueryFrom(schema: z.ZodObject) {
  return applyDecorators(
    ...Object.entries(schema.shape).map(([name, prop]) => {
      const json = openApiSchema(prop as z.ZodType, 'input');
      const { description, ...rest } = json;
      return ApiQuery({ name, required: !(prop as z.ZodType).safeParse(undefined).success, schema: rest as never, ...(typeof description === 'string' ? { description } : {}) });
    }),
  );
}

export function ApiPathParam(name: string, schema: z.ZodType) {
  const { description, ...rest } = openApiSchema(schema, 'input');
  return ApiParam({ name, schema: rest, ...(typeof description === 'string' ? { description } : {}) });
}

export function ApiResponseFrom(status: number, schema: z.ZodType | undefined, description: string) {
  return ApiResponse({ status, description, ...(schema ? { schema: openApiSchema(schema) } : {}) });
}

/**
 * The error responses a route can give (all with the same JSON error body). Their content type is given here,
 * so a route's `@ApiProduces` (text, images, event streams) describes only its success response.
 */
export function ApiErrors(...statuses: number[]) {
  const descriptions: Record<number, string> = {
    400: 'Invalid request: `field` names what to fix',
    401: 'Missing or unknown API key',
    403: 'The API key lacks the scope this route needs',
    404: 'No such run, schedule or file',
    409: 'The request conflicts with the current state (e.g. controlling a finished run, or posting a running run\'s id with another config)',
    413: 'Request body too large',
  };
  const content = { 'application/json': { schema: openApiSchema(ErrorBodySchema) } };
  return applyDecorators(...statuses.map((status) => ApiResponse({ status, description: descriptions[status] ?? 'Error', content })));
}
