#!/usr/bin/env node
// The `strata` executable: runs the compiled CLI (npm ci builds it through `prepare`).
import { main } from '../dist/cli/index.js';

process.exitCode = await main(process.argv);
