/*
 * The OpenAPI 3.1 document, generated from the route specs and their zod schemas (the
 * same objects that validate requests). docs/openapi.json is this document committed;
 * a test fails when the two differ (`npm run openapi` rewrites it).
 */
import { z } from 'zod';
import type { RouteSpec } from './route-spec.js';
import { errorBody } from './schemas.js';

type JsonSchema = Record<string, unknown>;

function jsonSchema(schema: z.ZodType, io: 'input' | 'output'): JsonSchema {
  const { $schema: _ignored, ...rest } = z.toJSONSchema(schema, { target: 'draft-2020-12', io, unrepresentable: 'any' }) as JsonSchema;
  return rest;
}

function parameters<S>(spec: RouteSpec<S>): JsonSchema[] {
  const list: JsonSchema[] = [];
  for (const [where, schema] of [
    ['path', spec.params],
    ['query', spec.query],
  ] as const) {
    if (!schema) continue;
    const object = jsonSchema(schema, 'input') as { properties?: Record<string, JsonSchema>; required?: string[] };
    for (const [name, property] of Object.entries(object.properties ?? {})) {
      list.push({ name, in: where, required: where === 'path' || (object.required ?? []).includes(name), schema: property });
    }
  }
  return list;
}

function responses<S>(spec: RouteSpec<S>): JsonSchema {
  const status = String(spec.status ?? 200);
  const success: JsonSchema =
    spec.status === 204
      ? { description: 'done' }
      : spec.produces
        ? { description: 'ok', content: { [spec.produces]: { schema: { type: 'string' } } } }
        : { description: 'ok', content: { 'application/json': { schema: spec.response ? jsonSchema(spec.response, 'output') : {} } } };
  const error = { description: 'error: {code, message} with a code of the error catalogue', content: { 'application/json': { schema: jsonSchema(errorBody, 'output') } } };
  return { [status]: success, default: error };
}

export function openApiDocument<S>(routes: readonly RouteSpec<S>[], version: string): JsonSchema {
  const paths: Record<string, Record<string, JsonSchema>> = {};
  for (const spec of routes) {
    const path = spec.path.replace(/:([A-Za-z]+)/g, '{$1}');
    const operation: JsonSchema = {
      summary: spec.summary,
      tags: [spec.tag],
      operationId: `${spec.method.toLowerCase()}${path.replace(/\/api\/v1/, '').replace(/[{}]/g, '').replace(/(^|[/-])([a-z])/g, (_m, _s, c: string) => c.toUpperCase())}`,
      security: spec.access === 'public' ? [] : [{ bearer: [] }],
      'x-strata-access': spec.access,
      parameters: parameters(spec),
      responses: responses(spec),
    };
    if (spec.body) operation.requestBody = { required: true, content: { 'application/json': { schema: jsonSchema(spec.body, 'input') } } };
    (paths[path] ??= {})[spec.method.toLowerCase()] = operation;
  }
  return {
    openapi: '3.1.0',
    info: { title: 'Strata API', version, description: 'Pools, volumes, snapshots, clones, exports, tasks, events and tokens of a Strata daemon.' },
    servers: [{ url: '/' }],
    components: { securitySchemes: { bearer: { type: 'http', scheme: 'bearer', description: 'an admin or read-only token' } } },
    paths,
  };
}
