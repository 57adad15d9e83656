/*
 * The VM routes of /api/v1: definitions, lifecycle, VM snapshots, clones, and the
 * consoles. The serial console is a WebSocket carrying the guest's bytes both ways (the
 * recent output first); VNC is a WebSocket proxied byte for byte to QEMU's VNC socket,
 * for noVNC in the web console. Both close when the VM's run ends. Browsers cannot set
 * headers on a WebSocket, so these two routes also take the token as `?access_token=`;
 * a refusal closes the socket with 4000 + the HTTP status and "CODE: message".
 */
import * as net from 'node:net';
import type { WebSocket } from 'ws';
import { StrataError } from '../common/errors.js';
import type { VmDefinition, VmManager } from '../vm/index.js';
import type { ApiServices } from './routes.js';
import { route, type RouteSpec } from './route-spec.js';
import * as schema from './schemas.js';

type Spec = RouteSpec<ApiServices>;
const v1 = '/api/v1';

function vms(services: ApiServices): VmManager {
  if (!services.vms) throw new StrataError('STRATA_E_ROUTE_NOT_FOUND', 'this daemon runs no VM manager');
  return services.vms;
}

function definitionFrom(body: typeof schema.createVmBody._output): VmDefinition {
  return {
    name: body.name,
    cpus: body.cpus ?? 1,
    memoryBytes: body.memoryBytes ?? 512 * 1024 * 1024,
    disks: body.disks.map((volume) => ({ volume })),
    nics: body.nics ?? [{ mode: 'user' }],
    cloudInit: body.cloudInit ?? null,
    boot: body.boot ?? null,
  };
}

function serialSocket(services: ApiServices, name: string, socket: WebSocket): void {
  const serial = vms(services).console(name);
  socket.send(serial.recent());
  const stop = serial.watch(
    (data) => socket.send(data),
    () => socket.close(1000, 'the VM stopped'),
  );
  socket.on('message', (data: Buffer) => serial.input(Buffer.from(data)));
  socket.on('close', stop);
}

function vncSocket(services: ApiServices, name: string, socket: WebSocket): void {
  const vnc = net.createConnection(vms(services).vncSocket(name));
  vnc.on('data', (data) => socket.send(data));
  vnc.on('close', () => socket.close());
  vnc.on('error', () => socket.close());
  socket.on('message', (data: Buffer) => vnc.write(Buffer.from(data)));
  socket.on('close', () => vnc.destroy());
}

export const vmRoutes: readonly Spec[] = [
  route<ApiServices>({
    method: 'GET',
    path: `${v1}/vms`,
    summary: 'List VMs with their state',
    tag: 'vms',
    access: 'read',
    response: schema.vmBody.array(),
    handler: (_input, services) => vms(services).list(),
  }),
  route<ApiServices, unknown, unknown, typeof schema.createVmBody._output>({
    method: 'POST',
    path: `${v1}/vms`,
    summary: 'Define a VM (disks are existing volumes, in boot order)',
    tag: 'vms',
    access: 'admin',
    body: schema.createVmBody,
    status: 201,
    response: schema.vmBody,
    handler: ({ body }, services) => vms(services).create(definitionFrom(body)),
  }),
  route<ApiServices, typeof schema.vmParams._output>({
    method: 'GET',
    path: `${v1}/vms/:vm`,
    summary: 'Show a VM',
    tag: 'vms',
    access: 'read',
    params: schema.vmParams,
    response: schema.vmBody,
    handler: ({ params }, services) => vms(services).get(params.vm),
  }),
  route<ApiServices, typeof schema.vmParams._output, unknown, typeof schema.updateVmBody._output>({
    method: 'PATCH',
    path: `${v1}/vms/:vm`,
    summary: 'Change a stopped VM (vCPUs, memory, disks, NICs, cloud-init, direct boot); the guest sees it at the next start',
    tag: 'vms',
    access: 'admin',
    params: schema.vmParams,
    body: schema.updateVmBody,
    response: schema.vmBody,
    handler: ({ params, body }, services) =>
      vms(services).update(params.vm, {
        ...body,
        disks: body.disks?.map((volume) => ({ volume })),
      }),
  }),
  route<ApiServices, typeof schema.vmParams._output, typeof schema.deleteVmQuery._output>({
    method: 'DELETE',
    path: `${v1}/vms/:vm`,
    summary: 'Delete a stopped VM, with its disk volumes when withVolumes=true',
    tag: 'vms',
    access: 'admin',
    params: schema.vmParams,
    query: schema.deleteVmQuery,
    status: 204,
    handler: ({ params, query }, services) => vms(services).delete(params.vm, { withVolumes: query.withVolumes === 'true' }),
  }),
  ...(['start', 'reset', 'pause', 'resume'] as const).map((verb) =>
    route<ApiServices, typeof schema.vmParams._output>({
      method: 'POST',
      path: `${v1}/vms/:vm/${verb}`,
      summary: `${verb[0].toUpperCase()}${verb.slice(1)} a VM`,
      tag: 'vms',
      access: 'admin',
      params: schema.vmParams,
      response: schema.vmBody,
      handler: ({ params }, services) => vms(services)[verb](params.vm),
    }),
  ),
  route<ApiServices, typeof schema.vmParams._output, unknown, typeof schema.stopVmBody._output>({
    method: 'POST',
    path: `${v1}/vms/:vm/stop`,
    summary: 'Stop a VM: ACPI power-down, then a hard stop after timeoutMs; force stops at once',
    tag: 'vms',
    access: 'admin',
    params: schema.vmParams,
    body: schema.stopVmBody,
    response: schema.vmBody,
    handler: ({ params, body }, services) => vms(services).stop(params.vm, body),
  }),
  route<ApiServices, typeof schema.vmParams._output, unknown, typeof schema.createSnapshotBody._output>({
    method: 'POST',
    path: `${v1}/vms/:vm/snapshots`,
    summary: 'Snapshot every disk at one instant (guest agent freeze, or pause)',
    tag: 'vms',
    access: 'admin',
    params: schema.vmParams,
    body: schema.createSnapshotBody,
    status: 201,
    response: schema.vmSnapshotBody,
    handler: ({ params, body }, services) => vms(services).snapshot(params.vm, body.name),
  }),
  route<ApiServices, typeof schema.vmSnapshotParams._output, unknown, typeof schema.rollbackBody._output>({
    method: 'POST',
    path: `${v1}/vms/:vm/snapshots/:snapshot/restore`,
    summary: 'Restore a stopped VM to a VM snapshot',
    tag: 'vms',
    access: 'admin',
    params: schema.vmSnapshotParams,
    body: schema.rollbackBody,
    response: schema.vmBody,
    handler: ({ params, body }, services) => vms(services).restore(params.vm, params.snapshot, body),
  }),
  route<ApiServices, typeof schema.vmParams._output, unknown, typeof schema.cloneVmBody._output>({
    method: 'POST',
    path: `${v1}/vms/:vm/clones`,
    summary: 'Clone a VM from one of its snapshots, or from a fresh one (instant volume clones)',
    tag: 'vms',
    access: 'admin',
    params: schema.vmParams,
    body: schema.cloneVmBody,
    status: 201,
    response: schema.vmBody,
    handler: ({ params, body }, services) => vms(services).clone(params.vm, body.snapshot, body.name),
  }),
  route<ApiServices, typeof schema.vmParams._output>({
    method: 'GET',
    path: `${v1}/vms/:vm/console/log`,
    summary: "The serial console's recent output, as text",
    tag: 'vms',
    access: 'read',
    params: schema.vmParams,
    produces: 'text/plain',
    async raw(_request, reply, services, { params }) {
      await reply.type('text/plain; charset=utf-8').send(vms(services).console(params.vm).recent());
    },
  }),
  route<ApiServices, typeof schema.vmParams._output>({
    method: 'GET',
    path: `${v1}/vms/:vm/console`,
    summary: 'Serial console (WebSocket; token also as ?access_token=)',
    tag: 'vms',
    access: 'admin',
    params: schema.vmParams,
    produces: 'application/octet-stream',
    websocket: (socket, services, { params }) => serialSocket(services, params.vm, socket),
  }),
  route<ApiServices, typeof schema.vmParams._output>({
    method: 'GET',
    path: `${v1}/vms/:vm/vnc`,
    summary: 'VNC display (WebSocket for noVNC; token also as ?access_token=)',
    tag: 'vms',
    access: 'admin',
    params: schema.vmParams,
    produces: 'application/octet-stream',
    websocket: (socket, services, { params }) => vncSocket(services, params.vm, socket),
  }),
];
