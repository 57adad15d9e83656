/*
 * The HTTP server (fastify): registers the route specs with token checks and zod
 * parsing, serves the OpenAPI document and the web console, and turns every error into
 * the JSON body {code, message, details} with the status of http-status.ts. Fastify's
 * own failures (malformed JSON, a body over the limit, an unknown route) get catalogue
 * codes too, so a client never sees an answer of another shape.
 */
import * as path from 'node:path';
import fastifyStatic from '@fastify/static';
import fastifyWebsocket from '@fastify/websocket';
import Fastify, { type FastifyInstance, type FastifyReply, type FastifyRequest } from 'fastify';
import { z } from 'zod';
import { isStrataError, StrataError } from '../common/errors.js';
import { limits } from '../common/limits.js';
import type { Logger } from '../common/log.js';
import { errorResponse, httpStatusFor } from './http-status.js';
import { openApiDocument } from './openapi.js';
import { apiRoutes, type ApiServices } from './routes.js';
import { vmRoutes } from './vm-routes.js';
import type { RouteInput, RouteSpec } from './route-spec.js';
import type { TokenInfo } from './tokens.js';

export interface ApiServerOptions {
  readonly services: ApiServices;
  readonly logger: Logger;
  /** Folder of the web console's static files, served at / (null: no console). */
  readonly consoleDir: string | null;
  /** Extra static folders: URL prefix → folder (the console's vendored libraries). */
  readonly assets?: Readonly<Record<string, string>>;
}

function parse<T>(schema: z.ZodType<T> | undefined, value: unknown, what: string): T {
  if (!schema) return undefined as T;
  const result = schema.safeParse(value ?? {});
  if (result.success) return result.data;
  throw new StrataError('STRATA_E_INVALID_ARGUMENT', `invalid ${what}: ${z.prettifyError(result.error).replace(/\n\s*/g, ' ')}`, {
    issues: result.error.issues.map((issue) => ({ path: issue.path.join('.'), message: issue.message })),
  });
}

function bearer(request: FastifyRequest, spec: RouteSpec<ApiServices>): string {
  const header = request.headers.authorization;
  if (header || !spec.websocket) return header ?? '';
  // Browsers cannot set headers on a WebSocket: those routes also take ?access_token=.
  const token = (request.query as Record<string, unknown> | undefined)?.access_token;
  return typeof token === 'string' ? `Bearer ${token}` : '';
}

function authenticate(request: FastifyRequest, spec: RouteSpec<ApiServices>, services: ApiServices): TokenInfo | null {
  if (spec.access === 'public') return null;
  const match = /^Bearer\s+(\S+)$/i.exec(bearer(request, spec));
  const token = match ? services.tokens.verify(match[1]) : null;
  if (!token) throw new StrataError('STRATA_E_UNAUTHORIZED', match ? 'the token is not valid' : 'a bearer token is required (Authorization: Bearer TOKEN)');
  if (spec.access === 'admin' && token.role !== 'admin') throw new StrataError('STRATA_E_FORBIDDEN', `token ${token.name} is read-only`);
  return token;
}

function fastifyErrorToStrata(error: { statusCode?: number; code?: string; message: string }): StrataError {
  if (error.statusCode === 413) return new StrataError('STRATA_E_INVALID_ARGUMENT', `the request body is larger than ${limits.apiBodyBytesMax} bytes`);
  if (error.statusCode !== undefined && error.statusCode < 500) return new StrataError('STRATA_E_INVALID_ARGUMENT', error.message, { fastify: error.code });
  return new StrataError('STRATA_E_IO', error.message);
}

function routeInput(request: FastifyRequest, spec: RouteSpec<ApiServices>, services: ApiServices): RouteInput<unknown, unknown, unknown> {
  const token = authenticate(request, spec, services);
  const query = { ...(request.query as Record<string, unknown>) };
  if (spec.websocket) delete query.access_token;
  return {
    params: parse(spec.params, request.params, 'path'),
    query: parse(spec.query, query, 'query'),
    body: parse(spec.body, spec.body ? (request.body ?? {}) : undefined, 'body'),
    token,
  };
}

/** WebSocket close codes for refusals: 4000 + the HTTP status the error would have had. */
function refusalCode(error: StrataError): number {
  return 4000 + httpStatusFor(error);
}

function registerWebsocket(app: FastifyInstance, spec: RouteSpec<ApiServices>, services: ApiServices): void {
  app.route({
    method: 'GET',
    url: spec.path,
    handler: async () => {
      throw new StrataError('STRATA_E_INVALID_ARGUMENT', `${spec.path} is a WebSocket: connect with an Upgrade request`);
    },
    // Checked after the upgrade, so that a browser learns why it was refused: the socket
    // closes with 4000 + the HTTP status and "CODE: message" as the reason.
    wsHandler: (socket, request) => {
      try {
        spec.websocket!(socket, services, routeInput(request, spec, services));
      } catch (error) {
        const strata = isStrataError(error) ? error : new StrataError('STRATA_E_IO', String(error));
        socket.close(refusalCode(strata), Buffer.from(`${strata.code}: ${strata.message}`).subarray(0, 123).toString());
      }
    },
  });
}

function register(app: FastifyInstance, spec: RouteSpec<ApiServices>, services: ApiServices): void {
  if (spec.websocket) return registerWebsocket(app, spec, services);
  app.route({
    method: spec.method,
    url: spec.path,
    handler: async (request: FastifyRequest, reply: FastifyReply) => {
      const input = routeInput(request, spec, services);
      if (spec.raw) return spec.raw(request, reply, services, input);
      const result = await spec.handler!(input, services);
      if (spec.status === 204) return reply.code(204).send();
      return reply.code(spec.status ?? 200).send(result);
    },
  });
}

const openApiRoute: RouteSpec<ApiServices> = {
  method: 'GET',
  path: '/api/v1/openapi.json',
  summary: 'This OpenAPI document',
  tag: 'service',
  access: 'read',
  handler: (_input, services) => apiDocument(services.version),
};

/** Every route, the OpenAPI document's own included. */
export function allRoutes(): readonly RouteSpec<ApiServices>[] {
  return [...apiRoutes, ...vmRoutes, openApiRoute];
}

let documentCache: { version: string; document: Record<string, unknown> } | null = null;

/** The OpenAPI document of this API. */
export function apiDocument(version: string): Record<string, unknown> {
  if (documentCache?.version !== version) documentCache = { version, document: openApiDocument(allRoutes(), version) };
  return documentCache.document;
}

export async function buildApiServer(options: ApiServerOptions): Promise<FastifyInstance> {
  const { services, logger } = options;
  const app = Fastify({ bodyLimit: limits.apiBodyBytesMax, logger: false, return503OnClosing: true, forceCloseConnections: true });
  app.setErrorHandler((error: unknown, request, reply) => {
    const strata = isStrataError(error) ? error : fastifyErrorToStrata(error as { statusCode?: number; code?: string; message: string });
    const status = httpStatusFor(strata);
    if (status >= 500) logger.log('error', 'API request failed', { method: request.method, url: request.url, code: strata.code, error: strata.message });
    void reply.code(status).send(errorResponse(strata));
  });
  app.setNotFoundHandler((request, reply) => {
    const strata = new StrataError('STRATA_E_ROUTE_NOT_FOUND', `no route ${request.method} ${request.url.split('?')[0]}`);
    void reply.code(404).send(errorResponse(strata));
  });
  await app.register(fastifyWebsocket, { options: { maxPayload: limits.apiBodyBytesMax } });
  const routes = allRoutes();
  for (const spec of routes) register(app, spec, services);
  if (options.consoleDir) {
    await app.register(fastifyStatic, { root: path.resolve(options.consoleDir), prefix: '/', index: ['index.html'], wildcard: false });
    for (const [prefix, root] of Object.entries(options.assets ?? {})) {
      await app.register(fastifyStatic, { root, prefix, decorateReply: false, wildcard: true });
    }
  }
  return app;
}
