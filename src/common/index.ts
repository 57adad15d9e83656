/*
 * common: errors and their codes, limits, assert, units, names. Depends on nothing else
 * in Strata; every other layer may import it.
 */
export * from './errors.js';
export * from './assert.js';
export * from './limits.js';
export * from './units.js';
export * from './names.js';
export * from './codec-names.js';
export * from './generational-cache.js';
