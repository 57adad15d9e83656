#!/usr/bin/env node
// The `strata` executable: runs the compiled CLI (npm ci builds it through `prepare`).
import '../dist/cli/run.js';
