/*
 * api: the control plane's HTTP side — the REST API under /api/v1 (OpenAPI document at
 * /api/v1/openapi.json generated from the same zod schemas that validate requests),
 * bearer tokens, tasks for long operations, events and alerts, Prometheus metrics, and
 * the web console's static files. May import engine, vm (its public index) and common;
 * must not import nbd, cli or daemon (the daemon hands it what it needs of NBD through
 * ApiServices).
 */
export { buildApiServer, allRoutes, apiDocument } from './server.js';
export type { ApiServerOptions } from './server.js';
export type { ApiServices, ExportView } from './routes.js';
export { TokenStore } from './tokens.js';
export type { TokenInfo, TokenRole } from './tokens.js';
export { TaskManager } from './tasks.js';
export type { TaskInfo, TaskState } from './tasks.js';
export { EventLog } from './events.js';
export type { StrataEvent, EventSeverity } from './events.js';
export { AlertWatcher } from './alerts.js';
export { Metrics, instrumentDevice } from './metrics.js';
export { poolSummary } from './pool-summary.js';
export type { PoolSummary } from './pool-summary.js';
export { httpStatusFor } from './http-status.js';
