/*
 * The one mapping from Strata errors to NBD error values. Anything unexpected is EIO:
 * the client sees a failed request, never wrong data.
 */
import { isStrataError } from '../common/errors.js';
import { NBD_EINVAL, NBD_EIO, NBD_ENOSPC, NBD_EPERM, NBD_ESHUTDOWN } from '../protocol/nbd/constants.js';

export function nbdErrno(error: unknown): number {
  if (!isStrataError(error)) return NBD_EIO;
  switch (error.code) {
    case 'STRATA_E_READ_ONLY':
      return NBD_EPERM;
    case 'STRATA_E_NO_SPACE':
      return NBD_ENOSPC;
    case 'STRATA_E_OUT_OF_RANGE':
    case 'STRATA_E_INVALID_ARGUMENT':
      return NBD_EINVAL;
    case 'STRATA_E_POOL_CLOSED':
    case 'STRATA_E_VOLUME_NOT_FOUND':
    case 'STRATA_E_SNAPSHOT_NOT_FOUND':
      return NBD_ESHUTDOWN;
    default:
      return NBD_EIO;
  }
}
