/*
 * vm: QEMU/KVM virtual machines over QMP, with disks on NBD exports. May import engine,
 * nbd and common; must not import api, cli or daemon. Not built yet: see the project issues.
 */
export {};
