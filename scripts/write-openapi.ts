/*
 * Rewrites docs/openapi.json from the API's route schemas (`npm run openapi`); a test
 * fails while the committed document differs from the generated one.
 */
import * as fs from 'node:fs';
import { apiDocument } from '../src/api/index.js';

const version = (JSON.parse(fs.readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as { version: string }).version;
fs.writeFileSync(new URL('../docs/openapi.json', import.meta.url), `${JSON.stringify(apiDocument(version), null, 2)}\n`);
