#!/usr/bin/env node
// Bundles @rtm/client-sdk for browsers: one ES module, dist/rtm-client.browser.js.
// `ws` stays external: the SDK only imports it (dynamically) when there is no global WebSocket,
// which never happens in a browser. The protocol package is bundled from its TypeScript sources.
//
//   node packages/client-sdk/scripts/build-browser.mjs [--minify]
import { build } from 'esbuild';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

const packageDir = fileURLToPath(new URL('..', import.meta.url));

/**
 * The protocol package's JSON text module (json-bigint, bignumber.js: a quarter of the bundle)
 * becomes its browser stand-in, which has none: the SDK speaks msgpack only (json-text.browser.ts).
 */
const withoutJsonText = {
  name: 'rtm-without-json-text',
  setup(b) {
    b.onResolve({ filter: /^\.\/json-text\.js$/ }, (args) => ({
      path: join(args.resolveDir, args.importer.endsWith('.ts') ? 'json-text.browser.ts' : 'json-text.browser.js'),
    }));
  },
};

/**
 * Builds the browser bundle. With `write: false` the output stays in memory
 * (`result.outputFiles[0].text`), which the browser test uses; `metafile: true` adds esbuild's
 * list of inputs, imports and exports (`result.metafile`), to check what the bundle pulls in.
 * @param {{ outfile?: string, minify?: boolean, write?: boolean, metafile?: boolean }} [options]
 */
export async function buildBrowserBundle(options = {}) {
  return build({
    absWorkingDir: packageDir,
    entryPoints: ['src/index.ts'],
    outfile: options.outfile ?? 'dist/rtm-client.browser.js',
    bundle: true,
    format: 'esm',
    platform: 'browser',
    target: 'es2020',
    external: ['ws'],
    conditions: ['rtm-source'],
    sourcemap: options.write === false ? false : 'linked',
    minify: options.minify ?? false,
    write: options.write ?? true,
    logLevel: options.write === false ? 'warning' : 'info',
    legalComments: 'eof',
    metafile: options.metafile ?? false,
    plugins: [withoutJsonText],
  });
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  await buildBrowserBundle({ minify: process.argv.includes('--minify') });
}
