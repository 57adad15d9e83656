/*
 * The API's schemas (zod): every request body, query and path is parsed by these, and
 * the OpenAPI document is generated from the same objects, so the two cannot disagree.
 * Bodies are strict (unknown keys are errors: a typo must not be silently ignored).
 * Names are checked again by the engine's naming rules, which give the error code.
 */
import { z } from 'zod';

const name = z.string().min(1).max(128);
const bytes = z.number().int().nonnegative();

export const volumeParams = z.strictObject({ volume: name });
export const snapshotParams = z.strictObject({ volume: name, snapshot: name });
export const poolParams = z.strictObject({ pool: name });
export const taskParams = z.strictObject({ id: z.coerce.number().int().positive() });
export const tokenParams = z.strictObject({ token: name });

export const imageFormat = z.enum(['raw', 'qcow2', 'vmdk', 'vhdx', 'vdi', 'ova']);

export const createPoolBody = z.strictObject({
  name,
  blockSize: z.number().int().positive().optional().describe('bytes, a power of two from 4096 to 1048576'),
  dedup: z.boolean().optional(),
  compression: z.enum(['lz4', 'zstd', 'none']).optional(),
});
export const compactBody = z.strictObject({ now: z.boolean().optional().describe('delete replaced packs without the grace period') });
export const checkBody = z.strictObject({ deep: z.boolean().optional(), repair: z.boolean().optional() });
export const createVolumeBody = z.strictObject({ name, sizeBytes: bytes, pool: name.optional() });
export const updateVolumeBody = z.strictObject({
  name: name.optional().describe('rename to this'),
  sizeBytes: bytes.optional().describe('resize to this'),
  force: z.boolean().optional().describe('allow shrinking'),
});
export const importVolumeBody = z.strictObject({
  name,
  path: z.string().min(1).describe('image file on the daemon host'),
  format: imageFormat.optional().describe('detected when omitted'),
  pool: name.optional(),
});
export const exportVolumeBody = z.strictObject({
  path: z.string().min(1).describe('file to create on the daemon host'),
  format: imageFormat.exclude(['ova']),
  snapshot: name.optional(),
});
export const createSnapshotBody = z.strictObject({ name });
export const rollbackBody = z.strictObject({ destroyNewer: z.boolean().optional() });
export const cloneBody = z.strictObject({ name });
export const createTokenBody = z.strictObject({ name, readOnly: z.boolean().optional() });
export const eventsQuery = z.strictObject({ after: z.coerce.number().int().nonnegative().optional() });

export const errorBody = z.object({ code: z.string(), message: z.string(), details: z.record(z.string(), z.unknown()).optional() });

const policy = z.object({ blockSize: z.number(), dedup: z.boolean(), compression: z.string() });

export const poolBody = z.object({
  name: z.string(),
  policy,
  volumes: z.number(),
  snapshots: z.number(),
  logicalBytes: z.number(),
  mappedBytes: z.number(),
  uniqueBytes: z.number(),
  referencedBytes: z.number(),
  storedBytes: z.number(),
  liveStoredBytes: z.number(),
  metadataBytes: z.number(),
  dedupRatio: z.number(),
  compressionRatio: z.number(),
  dirtyBytes: z.number(),
  checksumErrors: z.number(),
  capacityBytes: z.number(),
  availableBytes: z.number(),
  usageFraction: z.number(),
  overcommitRatio: z.number(),
  reclaim: z.object({ runs: z.number(), packsCompacted: z.number(), packsDeleted: z.number(), bytesFreed: z.number() }),
  frameCache: z.object({ bytes: z.number(), hits: z.number(), misses: z.number() }),
});

export const volumeBody = z.object({
  name: z.string(),
  pool: z.string(),
  sizeBytes: z.number(),
  createdMs: z.number(),
  snapshots: z.number(),
  parent: z.object({ volume: z.string(), snapshot: z.string() }).nullable(),
});

export const snapshotBody = z.object({
  volume: z.string(),
  name: z.string(),
  sizeBytes: z.number(),
  createdMs: z.number(),
  reclaimableBytes: z.number().optional().describe('stored bytes deleting it would free'),
});

export const volumeDetailBody = volumeBody.extend({
  mappedBytes: z.number(),
  zeroBytes: z.number(),
  uniqueStoredBytes: z.number(),
  uniqueChunks: z.number(),
  sharedChunks: z.number(),
  snapshotList: z.array(snapshotBody),
  clones: z.array(z.string()),
});

export const taskBody = z.object({
  id: z.number(),
  kind: z.string(),
  subject: z.string(),
  state: z.enum(['running', 'succeeded', 'failed', 'cancelled']),
  percent: z.number(),
  phase: z.string(),
  createdMs: z.number(),
  finishedMs: z.number().nullable(),
  result: z.unknown(),
  error: z.object({ code: z.string(), message: z.string() }).nullable(),
});

export const eventBody = z.object({
  id: z.number(),
  timeMs: z.number(),
  severity: z.enum(['info', 'warning', 'error']),
  kind: z.string(),
  subject: z.string(),
  message: z.string(),
});

export const tokenBody = z.object({ name: z.string(), role: z.enum(['admin', 'read-only']), createdMs: z.number() });
export const createdTokenBody = z.object({ token: tokenBody, secret: z.string().describe('shown only once') });

export const exportBody = z.object({
  name: z.string(),
  volume: z.string(),
  snapshot: z.string().nullable(),
  readOnly: z.boolean(),
  description: z.string(),
  uris: z.array(z.string()),
  clients: z.array(z.object({ id: z.number(), address: z.string(), tls: z.boolean() })),
});

export const ioBody = z.object({
  timeMs: z.number(),
  volumes: z.array(
    z.object({ volume: z.string(), readOps: z.number(), writeOps: z.number(), otherOps: z.number(), readBytes: z.number(), writeBytes: z.number() }),
  ),
});

export const healthBody = z.object({ status: z.literal('ok'), version: z.string() });

export const vmParams = z.strictObject({ vm: name });
export const vmSnapshotParams = z.strictObject({ vm: name, snapshot: name });
export const deleteVmQuery = z.strictObject({ withVolumes: z.enum(['true', 'false']).optional() });

const mac = z
  .string()
  .regex(/^[0-9A-Fa-f]{2}(:[0-9A-Fa-f]{2}){5}$/)
  .optional()
  .describe('MAC address; assigned (52:54:00:...) when omitted, kept across changes');
const nic = z.discriminatedUnion('mode', [
  z.strictObject({ mode: z.literal('user'), mac }),
  z.strictObject({ mode: z.literal('bridge'), bridge: z.string().min(1).max(15), mac }),
  z.strictObject({ mode: z.literal('tap'), tap: z.string().min(1).max(15), mac }),
]);

export const createVmBody = z.strictObject({
  name,
  cpus: z.number().int().min(1).max(256).optional().describe('default 1'),
  memoryBytes: z.number().int().positive().optional().describe('default 512 MiB; at most the host memory'),
  disks: z.array(name).max(16).describe('volume names, in boot order'),
  nics: z.array(nic).max(8).optional().describe('default one user-mode NAT interface'),
  cloudInit: z
    .strictObject({
      userData: z.string().max(256 * 1024),
      metaData: z.string().max(64 * 1024).optional(),
      networkConfig: z.string().max(64 * 1024).optional(),
      sshKeys: z.array(z.string().max(16 * 1024)).max(64).optional(),
    })
    .optional(),
  boot: z.strictObject({ kernel: z.string().min(1), initrd: z.string().min(1).optional(), append: z.string().max(4096).optional() }).optional(),
});
export const updateVmBody = z
  .strictObject({
    cpus: createVmBody.shape.cpus,
    memoryBytes: z.number().int().positive().optional().describe('at most the host memory'),
    disks: createVmBody.shape.disks.optional(),
    nics: z.array(nic).max(8).optional(),
    cloudInit: createVmBody.shape.cloudInit.unwrap().nullable().optional().describe('null removes the seed'),
    boot: createVmBody.shape.boot.unwrap().nullable().optional().describe('null boots from the first disk'),
  })
  .refine((body) => Object.keys(body).length > 0, 'name at least one field to change');
export const stopVmBody = z.strictObject({
  force: z.boolean().optional().describe('hard stop at once'),
  timeoutMs: z.number().int().min(0).max(3_600_000).optional().describe('ACPI power-down wait before the hard stop'),
});
export const cloneVmBody = z.strictObject({ name, snapshot: name.optional().describe('VM snapshot to clone; a new one is taken when omitted') });

export const vmSnapshotBody = z.object({
  vm: z.string(),
  name: z.string(),
  createdMs: z.number(),
  method: z.enum(['fsfreeze', 'pause', 'offline']),
  disks: z.array(z.object({ volume: z.string(), snapshot: z.string() })),
});

export const vmBody = z.object({
  name: z.string(),
  state: z.enum(['stopped', 'running', 'paused']),
  definition: z.object({
    name: z.string(),
    cpus: z.number(),
    memoryBytes: z.number(),
    disks: z.array(z.object({ volume: z.string() })),
    nics: z.array(z.object({ mode: z.string() }).passthrough()),
    cloudInit: z.unknown(),
    boot: z.object({ kernel: z.string(), initrd: z.string().optional(), append: z.string().optional() }).nullable(),
  }),
  createdMs: z.number(),
  pid: z.number().nullable(),
  startedMs: z.number().nullable(),
  accel: z.object({ accel: z.enum(['kvm', 'tcg']), reason: z.string() }).nullable(),
  snapshots: z.array(vmSnapshotBody),
});
