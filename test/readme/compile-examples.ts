/**
 * Type-checks the code examples of a package README as a user would compile them, against the
 * packages' sources (the `rtm-source` export condition) and the repository's compiler options:
 *
 * - the ```ts blocks of the file, in order, form one module (later blocks use what earlier ones
 *   declared, as a reader does);
 * - the `<script type="module">` of each ```html block is a module of its own; `imports` maps its
 *   import paths (e.g. the browser bundle → the package it is built from).
 *
 * Every other line is blanked, so a reported line number is the README's own line.
 *
 *   assert.deepEqual(readmeExampleErrors(new URL('../README.md', import.meta.url)), []);
 */
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import ts from 'typescript';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));

export interface ReadmeCheckOptions {
  /** Import specifiers of html examples → what to check them against. */
  readonly imports?: Readonly<Record<string, string>>;
}

/** The compile errors of the README's examples, as `README.md:<line>: <message>`; [] when they all compile. */
export function readmeExampleErrors(readme: URL, options: ReadmeCheckOptions = {}): string[] {
  const path = fileURLToPath(readme);
  const lines = readFileSync(path, 'utf8').split('\n');
  const modules = exampleModules(lines, options.imports ?? {}).map((text, i) => ({ file: `${path}.example-${i}.ts`, text }));
  const compilerOptions = repositoryCompilerOptions();
  const host = ts.createCompilerHost(compilerOptions);
  const virtual = new Map(modules.map((m) => [m.file, m.text]));
  const getSourceFile = host.getSourceFile.bind(host);
  const fileExists = host.fileExists.bind(host);
  host.getSourceFile = (file, language, ...rest) =>
    virtual.has(file) ? ts.createSourceFile(file, virtual.get(file)!, language) : getSourceFile(file, language, ...rest);
  host.fileExists = (file) => virtual.has(file) || fileExists(file);
  const program = ts.createProgram([...virtual.keys()], compilerOptions, host);
  const errors: string[] = [];
  for (const file of virtual.keys()) {
    const source = program.getSourceFile(file)!;
    for (const d of [...program.getSyntacticDiagnostics(source), ...program.getSemanticDiagnostics(source)]) {
      const line = d.start === undefined ? 0 : source.getLineAndCharacterOfPosition(d.start).line + 1;
      errors.push(`README.md:${line}: ${ts.flattenDiagnosticMessageText(d.messageText, '\n')}`);
    }
  }
  return errors;
}

/** One text per module, each as long as the README, with only that module's lines kept. */
function exampleModules(lines: readonly string[], imports: Readonly<Record<string, string>>): string[] {
  const blank = (): string[] => lines.map(() => '');
  const tsModule = blank();
  const modules: string[][] = [];
  let fence: string | undefined;
  let script: string[] | undefined;
  lines.forEach((line, i) => {
    const marker = /^```(\w*)\s*$/.exec(line);
    if (marker) {
      fence = fence === undefined ? marker[1] : undefined;
      return;
    }
    if (fence === 'ts') tsModule[i] = line;
    if (fence !== 'html') return;
    if (/<script type="module">/.test(line)) modules.push((script = blank()));
    else if (/<\/script>/.test(line)) script = undefined;
    else if (script) script[i] = Object.entries(imports).reduce((text, [from, to]) => text.replaceAll(`'${from}'`, `'${to}'`), line);
  });
  return [tsModule, ...modules].map((m) => `${m.join('\n')}\nexport {};\n`);
}

function repositoryCompilerOptions(): ts.CompilerOptions {
  const base = ts.readConfigFile(`${ROOT}tsconfig.base.json`, ts.sys.readFile);
  const { options } = ts.parseJsonConfigFileContent(base.config, ts.sys, ROOT);
  return { ...options, noEmit: true, composite: false, declaration: false, sourceMap: false };
}
