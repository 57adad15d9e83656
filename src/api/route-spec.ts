/*
 * A route of the REST API as data: method, path, who may call it, the zod schemas of its
 * path, query and body, the schema of its answer, and the handler. The server registers
 * routes from these specs and the OpenAPI document is generated from the same specs.
 */
import type { FastifyReply, FastifyRequest } from 'fastify';
import type { WebSocket } from 'ws';
import type { z } from 'zod';
import type { TokenInfo } from './tokens.js';

export type Access = 'public' | 'read' | 'admin';

export interface RouteInput<P, Q, B> {
  readonly params: P;
  readonly query: Q;
  readonly body: B;
  readonly token: TokenInfo | null;
}

export interface RouteSpec<S, P = unknown, Q = unknown, B = unknown> {
  readonly method: 'GET' | 'POST' | 'PATCH' | 'DELETE';
  /** Fastify form: /api/v1/volumes/:volume */
  readonly path: string;
  readonly summary: string;
  readonly tag: string;
  readonly access: Access;
  readonly params?: z.ZodType<P>;
  readonly query?: z.ZodType<Q>;
  readonly body?: z.ZodType<B>;
  /** Success status: 200 unless said; 201 created; 202 task started; 204 no body. */
  readonly status?: 200 | 201 | 202 | 204;
  /** Schema of the JSON answer (absent for 204 and for streams). */
  readonly response?: z.ZodType;
  /** Non-JSON answers (metrics text, event stream) give their media type here. */
  readonly produces?: string;
  readonly handler?: (input: RouteInput<P, Q, B>, services: S) => Promise<unknown> | unknown;
  /** Streams and text answers write the reply themselves. */
  readonly raw?: (request: FastifyRequest, reply: FastifyReply, services: S, input: RouteInput<P, Q, B>) => Promise<void> | void;
  /** WebSocket routes take over the upgraded connection. */
  readonly websocket?: (socket: WebSocket, services: S, input: RouteInput<P, Q, B>) => void;
}

/** Keeps the handler's input typed by the spec's schemas. */
export function route<S, P = unknown, Q = unknown, B = unknown>(spec: RouteSpec<S, P, Q, B>): RouteSpec<S> {
  return spec as unknown as RouteSpec<S>;
}
