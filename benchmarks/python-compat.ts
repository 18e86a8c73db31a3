/**
 * The few Python behaviours the official evaluation scripts rely on, reproduced exactly so that a rule written
 * here gives the answer the authors' script gives:
 *  - `parsePythonFloat`: what `float(text)` accepts (MMMU's `check_is_number`, MathVista's `float(extraction)`);
 *  - `pythonRound`: `round(x, n)`, which rounds the double's exact binary value half-to-even (so `round(0.125, 2)`
 *    is 0.12 and `round(2.675, 2)` is 2.67), not JavaScript's `toFixed` half-up;
 *  - `parsePythonStringList`: a stringified Python list of strings, the form in which MMMU's `options` (and its
 *    multi-answer `answer`s) are published;
 *  - `levenshtein`: the edit distance of the `Levenshtein` package, over code points.
 */

// Python's float syntax, less the rarely used `_` digit separators: sign, digits with an optional point (or a
// point and digits), optional exponent; `inf`, `infinity` and `nan` in any case.
const PY_FLOAT = /^[+-]?(?:(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?|inf(?:inity)?|nan)$/i;

/** `float(text)` in Python, or null where it raises `ValueError`. Surrounding whitespace is allowed, as there. */
export function parsePythonFloat(text: string): number | null {
  const s = text.trim();
  if (!PY_FLOAT.test(s)) return null;
  const lower = s.toLowerCase().replace(/^\+/, '');
  if (lower.endsWith('nan')) return Number.NaN;
  if (lower.endsWith('inf') || lower.endsWith('infinity')) return lower.startsWith('-') ? -Infinity : Infinity;
  return Number(s);
}

/**
 * Python's `round(x, digits)` for `digits` ≥ 0: the decimal nearest to x's exact value with that many fractional
 * digits, ties to even, returned as the double nearest to that decimal.
 */
export function pythonRound(x: number, digits: number): number {
  if (!Number.isFinite(x) || Math.abs(x) >= 1e21) return x; // no fractional part left to round
  // toFixed(100) is x's exact decimal expansion for |x| ≥ 2^-47; smaller values round to 0 at any sane `digits`.
  const [whole = '0', fraction = ''] = Math.abs(x).toFixed(100).split('.');
  const kept = fraction.slice(0, digits);
  const next = fraction[digits] ?? '0';
  const rest = fraction.slice(digits + 1);
  const lastKept = Number((whole + kept).at(-1));
  const up = next > '5' || (next === '5' && (/[1-9]/.test(rest) || lastKept % 2 === 1));
  const scaled = BigInt(whole + kept) + (up ? 1n : 0n); // x · 10^digits, rounded
  const text = scaled.toString().padStart(digits + 1, '0');
  const decimal = digits === 0 ? text : `${text.slice(0, -digits)}.${text.slice(-digits)}`;
  return x < 0 ? -Number(decimal) : Number(decimal);
}

const ESCAPES: Readonly<Record<string, string>> = { n: '\n', t: '\t', r: '\r', '\\': '\\', "'": "'", '"': '"' };

/**
 * Parses a Python list literal of string literals (`['a', "b's", '\\n']`, `[]`), the stringified lists of the
 * published MMMU parquet files; null when the text is not one. Only the escapes such lists hold are decoded
 * (`\n`, `\t`, `\r`, `\\`, `\'`, `\"`); any other backslash is kept as it is.
 */
export function parsePythonStringList(text: string): string[] | null {
  const s = text.trim();
  if (!s.startsWith('[') || !s.endsWith(']')) return null;
  const items: string[] = [];
  let i = 1;
  const skipSpace = () => {
    while (i < s.length - 1 && /\s/.test(s[i]!)) i++;
  };
  skipSpace();
  if (i === s.length - 1) return items; // []
  for (;;) {
    const quote = s[i];
    if (quote !== "'" && quote !== '"') return null;
    let item = '';
    for (i++; i < s.length - 1 && s[i] !== quote; i++) {
      if (s[i] === '\\' && i + 1 < s.length - 1) {
        const escaped = ESCAPES[s[i + 1]!];
        item += escaped ?? `\\${s[i + 1]}`;
        i++;
      } else {
        item += s[i];
      }
    }
    if (s[i] !== quote) return null; // unterminated
    items.push(item);
    i++;
    skipSpace();
    if (i === s.length - 1) return items;
    if (s[i] !== ',') return null;
    i++;
    skipSpace();
    if (i === s.length - 1) return items; // a trailing comma, as Python allows
  }
}

/** The edit distance (insertions, deletions, substitutions) between two strings, over Unicode code points. */
export function levenshtein(a: string, b: string): number {
  const x = Array.from(a);
  const y = Array.from(b);
  let previous = Array.from({ length: y.length + 1 }, (_, j) => j);
  for (let i = 1; i <= x.length; i++) {
    const current = [i];
    for (let j = 1; j <= y.length; j++) {
      const substitution = previous[j - 1]! + (x[i - 1] === y[j - 1] ? 0 : 1);
      current.push(Math.min(previous[j]! + 1, current[j - 1]! + 1, substitution));
    }
    previous = current;
  }
  return previous[y.length]!;
}
