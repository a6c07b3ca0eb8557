import type { BuildResult } from 'esbuild';

/** Builds dist/rtm-client.browser.js (or keeps it in memory with `write: false`). */
export function buildBrowserBundle(options?: {
  outfile?: string;
  minify?: boolean;
  write?: boolean;
  metafile?: boolean;
}): Promise<BuildResult>;
