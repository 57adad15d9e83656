/*
 * The error catalogue: every error Strata reports to a caller is a StrataError with a
 * stable code from this table. Codes are never reused or renamed; docs/errors.md lists
 * the same codes (a test keeps the two in step). Each boundary (NBD errno, HTTP status,
 * CLI exit code) maps codes in exactly one place, using the `kind` recorded here.
 */

/** Broad classes that boundaries map to their own vocabulary. */
export type ErrorKind =
  | 'invalid' // the request is malformed or out of range
  | 'not-found'
  | 'conflict' // the object exists, is busy, or the state forbids the operation
  | 'no-space'
  | 'corrupt' // stored bytes failed verification
  | 'io' // the host failed an I/O we asked for
  | 'unsupported'
  | 'closed' // the pool or handle was closed
  | 'unauthorized' // no valid credentials
  | 'forbidden' // valid credentials without the right
  | 'cancelled'; // an operation stopped because it was asked to

interface CodeInfo {
  readonly kind: ErrorKind;
  readonly summary: string;
}

export const errorCatalogue = {
  STRATA_E_INVALID_ARGUMENT: { kind: 'invalid', summary: 'An argument is malformed or outside its allowed range.' },
  STRATA_E_INVALID_NAME: { kind: 'invalid', summary: 'A volume, snapshot or pool name breaks the naming rules.' },
  STRATA_E_OUT_OF_RANGE: { kind: 'invalid', summary: 'An I/O request reaches past the end of the volume.' },
  STRATA_E_READ_ONLY: { kind: 'invalid', summary: 'A write was sent to a read-only handle such as a snapshot.' },
  STRATA_E_POOL_EXISTS: { kind: 'conflict', summary: 'A pool already exists at the given place.' },
  STRATA_E_POOL_NOT_FOUND: { kind: 'not-found', summary: 'No pool exists at the given place.' },
  STRATA_E_POOL_LOCKED: { kind: 'conflict', summary: 'Another process has the pool open.' },
  STRATA_E_POOL_CLOSED: { kind: 'closed', summary: 'The pool, or a handle on it, was closed.' },
  STRATA_E_POOL_VERSION: { kind: 'unsupported', summary: 'The pool was written by a newer Strata than this one.' },
  STRATA_E_VOLUME_EXISTS: { kind: 'conflict', summary: 'A volume with that name already exists.' },
  STRATA_E_VOLUME_NOT_FOUND: { kind: 'not-found', summary: 'No volume has that name.' },
  STRATA_E_VOLUME_HAS_CLONES: { kind: 'conflict', summary: 'The volume cannot be deleted while clones of its snapshots exist.' },
  STRATA_E_SHRINK_NEEDS_FORCE: { kind: 'conflict', summary: 'Shrinking a volume discards data and needs an explicit force.' },
  STRATA_E_SNAPSHOT_EXISTS: { kind: 'conflict', summary: 'The volume already has a snapshot with that name.' },
  STRATA_E_SNAPSHOT_NOT_FOUND: { kind: 'not-found', summary: 'The volume has no snapshot with that name.' },
  STRATA_E_SNAPSHOT_HAS_CLONES: { kind: 'conflict', summary: 'The snapshot cannot be deleted while clones of it exist.' },
  STRATA_E_ROLLBACK_NEEDS_DESTROY: {
    kind: 'conflict',
    summary: 'Rolling back past newer snapshots needs permission to destroy them.',
  },
  STRATA_E_NOT_A_CLONE: { kind: 'invalid', summary: 'The volume has no parent snapshot to flatten away.' },
  STRATA_E_NO_SPACE: { kind: 'no-space', summary: 'The host file system is full.' },
  STRATA_E_CHECKSUM: { kind: 'corrupt', summary: 'Stored bytes failed checksum verification; nothing wrong was returned.' },
  STRATA_E_CHUNK_MISSING: { kind: 'corrupt', summary: 'Metadata points at a chunk or pack that does not exist.' },
  STRATA_E_METADATA_CORRUPT: { kind: 'corrupt', summary: 'A metadata record cannot be decoded; the metadata store is damaged.' },
  STRATA_E_IO: { kind: 'io', summary: 'The host failed a read, write or sync.' },
  STRATA_E_UNAUTHORIZED: { kind: 'unauthorized', summary: 'The request carries no token, or a token that is not valid.' },
  STRATA_E_FORBIDDEN: { kind: 'forbidden', summary: 'The token is valid but read-only, and the request changes something.' },
  STRATA_E_TOKEN_EXISTS: { kind: 'conflict', summary: 'A token with that name already exists.' },
  STRATA_E_TOKEN_NOT_FOUND: { kind: 'not-found', summary: 'No token has that name.' },
  STRATA_E_LAST_ADMIN_TOKEN: { kind: 'conflict', summary: 'The last admin token cannot be revoked.' },
  STRATA_E_TASK_NOT_FOUND: { kind: 'not-found', summary: 'No task has that id.' },
  STRATA_E_ROUTE_NOT_FOUND: { kind: 'not-found', summary: 'No API route matches the method and path.' },
  STRATA_E_CANCELLED: { kind: 'cancelled', summary: 'The operation was cancelled before it finished.' },
  STRATA_E_CONVERTER_FAILED: { kind: 'io', summary: 'The image converter (qemu-img) failed or is not installed.' },
  STRATA_E_DAEMON_UNREACHABLE: { kind: 'io', summary: 'The CLI could not reach the daemon at the given URL.' },
  STRATA_E_QMP: { kind: 'io', summary: 'QEMU refused a QMP command or its QMP connection failed.' },
  STRATA_E_QMP_TIMEOUT: { kind: 'io', summary: 'QEMU did not answer a QMP command in time.' },
  STRATA_E_GUEST_AGENT: { kind: 'io', summary: 'The QEMU guest agent did not answer or refused a command.' },
  STRATA_E_HYPERVISOR: { kind: 'io', summary: 'QEMU could not be started or stopped unexpectedly.' },
  STRATA_E_VM_EXISTS: { kind: 'conflict', summary: 'A virtual machine with that name already exists.' },
  STRATA_E_VM_NOT_FOUND: { kind: 'not-found', summary: 'No virtual machine has that name.' },
  STRATA_E_VM_STATE: { kind: 'conflict', summary: 'The virtual machine is not in a state that allows the operation.' },
  STRATA_E_VM_SNAPSHOT_NOT_FOUND: { kind: 'not-found', summary: 'The virtual machine has no snapshot with that name.' },
  STRATA_E_VM_SNAPSHOT_EXISTS: { kind: 'conflict', summary: 'The virtual machine already has a snapshot with that name.' },
  STRATA_E_VOLUME_IN_USE: { kind: 'conflict', summary: 'The volume is a disk of a virtual machine.' },
} as const satisfies Record<string, CodeInfo>;

export type ErrorCode = keyof typeof errorCatalogue;

export class StrataError extends Error {
  readonly code: ErrorCode;
  readonly kind: ErrorKind;
  /** Extra facts for logs and API bodies (names, offsets). Never secrets. */
  readonly details: Readonly<Record<string, unknown>>;

  constructor(code: ErrorCode, message: string, details: Record<string, unknown> = {}, options?: ErrorOptions) {
    super(message, options);
    this.name = 'StrataError';
    this.code = code;
    this.kind = errorCatalogue[code].kind;
    this.details = details;
  }
}

export function isCodeInCatalogue(code: string): code is ErrorCode {
  return Object.hasOwn(errorCatalogue, code);
}

export function isStrataError(error: unknown, code?: ErrorCode): error is StrataError {
  return error instanceof StrataError && (code === undefined || error.code === code);
}

/**
 * Turns a host I/O failure into a catalogued error: a full file system is reported as
 * such (callers must keep the unacknowledged data), everything else as an I/O error.
 */
export function hostIoError(error: unknown, what: string): StrataError {
  if (error instanceof StrataError) return error;
  const errno = (error as NodeJS.ErrnoException | undefined)?.code;
  const sqliteCode = (error as { code?: string } | undefined)?.code;
  if (errno === 'ENOSPC' || errno === 'EDQUOT' || sqliteCode === 'SQLITE_FULL') {
    return new StrataError('STRATA_E_NO_SPACE', `no space left on the host file system while ${what}`, {}, { cause: error });
  }
  const reason = error instanceof Error ? error.message : String(error);
  return new StrataError('STRATA_E_IO', `I/O failed while ${what}: ${reason}`, { errno }, { cause: error });
}
