import { readFileSync } from 'node:fs';

/** The server's version: `version` of packages/server/package.json (next to src/ and dist/ alike). */
export const VERSION: string = (JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as { version: string })
  .version;
