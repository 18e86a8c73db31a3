/**
 * The deployment tests' view of what the code reads: every UPPER_CASE_WITH_UNDERSCORES token in the repository's
 * .ts files, tests, fixtures, benches and infra/ left out. An environment variable a chart or Compose file sets must
 * be one of them (infra/helm/chart.test.ts, infra/compose/compose.test.ts).
 */
import { readFileSync, readdirSync, statSync } from 'node:fs';
import * as path from 'node:path';

const SKIP_DIRS = new Set(['node_modules', '.tools', '.sophia', '.git', 'dist', 'infra', 'test', 'testing', 'bench']);

export function codeTokens(root: string): Set<string> {
  const tokens = new Set<string>();
  const walk = (dir: string): void => {
    for (const entry of readdirSync(dir)) {
      const full = path.join(dir, entry);
      if (statSync(full).isDirectory()) {
        if (!SKIP_DIRS.has(entry)) walk(full);
      } else if (entry.endsWith('.ts') && !entry.endsWith('.test.ts') && !entry.endsWith('.contract.ts')) {
        for (const m of readFileSync(full, 'utf8').matchAll(/\b[A-Z][A-Z0-9]*(?:_[A-Z0-9]+)+\b/g)) tokens.add(m[0]);
      }
    }
  };
  walk(root);
  return tokens;
}
