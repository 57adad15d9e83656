/* The `strata` executable's entry: runs the CLI with the process arguments. */
import { main } from './main.js';

process.exitCode = await main(process.argv);
