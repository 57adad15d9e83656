/*
 * `npm run bench`: every benchmark, figures side by side with the peers measured in the
 * same run. Select sections with STRATA_BENCH=engine,snapshots,nbd,corpus,vm (default: all).
 * Not a test: nothing here asserts.
 */
import { benchCorpus } from './corpus/compare.js';
import { benchEngine } from './engine.js';
import { benchNbd } from './nbd/compare.js';
import { benchSnapshots } from './snapshots.js';
import { benchVm } from './vm.js';

const sections = (process.env.STRATA_BENCH ?? 'engine,snapshots,nbd,corpus,vm').split(',');
console.log(`# Strata benchmarks (node ${process.version}, ${new Date().toISOString()})`);
if (sections.includes('engine')) await benchEngine();
if (sections.includes('snapshots')) await benchSnapshots();
if (sections.includes('nbd')) await benchNbd();
if (sections.includes('corpus')) await benchCorpus();
if (sections.includes('vm')) await benchVm();
