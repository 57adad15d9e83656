/*
 * The CLI's side of the REST API: JSON requests with the bearer token, answers checked
 * for the API's error body. An error answer becomes the StrataError it names (so exit
 * codes follow the error catalogue); a daemon that cannot be reached becomes
 * STRATA_E_DAEMON_UNREACHABLE with the URL in the message.
 */
import { isCodeInCatalogue, StrataError } from '../common/errors.js';

export interface TaskAnswer {
  readonly id: number;
  readonly kind: string;
  readonly subject: string;
  readonly state: 'running' | 'succeeded' | 'failed' | 'cancelled';
  readonly percent: number;
  readonly phase: string;
  readonly result: unknown;
  readonly error: { readonly code: string; readonly message: string } | null;
}

export class ApiClient {
  constructor(
    readonly baseUrl: string,
    private readonly token: string | undefined,
  ) {}

  async request<T>(method: string, path: string, body?: unknown): Promise<T> {
    const headers: Record<string, string> = {};
    if (this.token) headers.authorization = `Bearer ${this.token}`;
    if (body !== undefined) headers['content-type'] = 'application/json';
    let response: Response;
    try {
      response = await fetch(new URL(path, this.baseUrl), { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
    } catch (error) {
      const reason = (error as { cause?: { code?: string } }).cause?.code ?? (error as Error).message;
      throw new StrataError('STRATA_E_DAEMON_UNREACHABLE', `cannot reach the Strata daemon at ${this.baseUrl} (${reason}); is \`strata serve\` running? (--url / STRATA_URL)`);
    }
    const text = await response.text();
    const parsed = text ? (JSON.parse(text) as unknown) : null;
    if (response.ok) return parsed as T;
    throw errorFromAnswer(response.status, parsed);
  }

  get<T>(path: string): Promise<T> {
    return this.request<T>('GET', path);
  }

  post<T>(path: string, body: unknown = {}): Promise<T> {
    return this.request<T>('POST', path, body);
  }
}

function errorFromAnswer(status: number, body: unknown): StrataError {
  const answer = body as { code?: string; message?: string; details?: Record<string, unknown> } | null;
  if (answer?.code && isCodeInCatalogue(answer.code)) return new StrataError(answer.code, answer.message ?? answer.code, answer.details ?? {});
  return new StrataError('STRATA_E_IO', `the daemon answered HTTP ${status}: ${JSON.stringify(body)}`);
}

/** The StrataError a failed or cancelled task reports. */
export function taskError(task: TaskAnswer): StrataError {
  const code = task.error?.code ?? 'STRATA_E_IO';
  return new StrataError(isCodeInCatalogue(code) ? code : 'STRATA_E_IO', `${task.kind} of ${task.subject} ${task.state}: ${task.error?.message ?? ''}`);
}

/** Encodes one path segment (names are checked by the daemon). */
export function segment(name: string): string {
  return encodeURIComponent(name);
}
