/*
 * api: the REST API (/api/v1, OpenAPI at /api/v1/openapi.json), auth and SSE. May import
 * engine and common; must not import nbd internals, vm internals, cli or daemon.
 * Not built yet: see the project issues.
 */
export {};
