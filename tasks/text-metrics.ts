/**
 * Text similarity metrics behind the OCR and free-form outcome rewards (docs/architecture.md §3). Pure functions, no I/O.
 *
 *  - Word error rate (WER): the word-level edit distance (substitutions + deletions + insertions, each costing 1)
 *    from the hypothesis to the reference, divided by the number of reference words. 0 is a perfect transcript;
 *    it is not capped at 1 (a hypothesis with many extra words can exceed it). Words are the whitespace-separated
 *    pieces of the lowercased, trimmed text; punctuation stays attached ("4719," ≠ "4719"), because for OCR a
 *    stray character is an error.
 *  - ROUGE-N F1 (N = 1, 2): overlap of the multisets of N-grams. Precision = matched / hypothesis N-grams,
 *    recall = matched / reference N-grams, where an N-gram seen k times on one side and m times on the other
 *    matches min(k, m) times. F1 = 2PR / (P + R).
 *  - ROUGE-L F1: the same F1 with "matched" = the length of the longest common subsequence of the two token
 *    sequences (in order, gaps allowed), over unigram counts: it rewards keeping the reference's word order.
 *
 * ROUGE tokens are the lowercased text split on runs of characters that are not letters or digits (Unicode-aware,
 * so "café" is one token), with empty tokens dropped — punctuation never counts. Every ROUGE score is 0 when the
 * two sides share nothing or either side has no N-grams (a one-word text has no bigrams) — which is why the `text`
 * grading rule (`tasks/grading.ts`) gives an exact normalised match 1 before it falls back to the ROUGE mean.
 */

/** WER tokens: trimmed, lowercased, split on whitespace. */
export function werTokens(text: string): string[] {
  const trimmed = text.trim().toLowerCase();
  return trimmed === '' ? [] : trimmed.split(/\s+/);
}

/** ROUGE tokens: lowercased, split on runs of non-alphanumeric characters, empty tokens dropped. */
export function rougeTokens(text: string): string[] {
  return text
    .toLowerCase()
    .split(/[^\p{L}\p{N}]+/u)
    .filter((t) => t !== '');
}

/** Levenshtein distance between two token sequences (unit cost for substitution, deletion, insertion). */
export function editDistance(a: readonly string[], b: readonly string[]): number {
  // One row of the (|a|+1) × (|b|+1) DP table at a time: prev[j] = distance(a[:i-1], b[:j]).
  let prev = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const cur = [i];
    for (let j = 1; j <= b.length; j++) {
      const substitution = prev[j - 1]! + (a[i - 1] === b[j - 1] ? 0 : 1);
      cur.push(Math.min(substitution, prev[j]! + 1, cur[j - 1]! + 1));
    }
    prev = cur;
  }
  return prev[b.length]!;
}

/**
 * Word error rate of `hypothesis` against `reference`. An empty reference gives 0 for an empty hypothesis and 1
 * otherwise (the ratio is undefined there; any output for "nothing to read" is fully wrong).
 */
export function wordErrorRate(hypothesis: string, reference: string): number {
  const hyp = werTokens(hypothesis);
  const ref = werTokens(reference);
  if (ref.length === 0) return hyp.length === 0 ? 0 : 1;
  return editDistance(hyp, ref) / ref.length;
}

function f1(matched: number, hypothesisCount: number, referenceCount: number): number {
  if (matched === 0 || hypothesisCount === 0 || referenceCount === 0) return 0;
  const precision = matched / hypothesisCount;
  const recall = matched / referenceCount;
  return (2 * precision * recall) / (precision + recall);
}

function ngrams(tokens: readonly string[], n: number): string[] {
  const out: string[] = [];
  // Tokens never contain spaces (they are runs of letters and digits), so a space joins them unambiguously.
  for (let i = 0; i + n <= tokens.length; i++) out.push(tokens.slice(i, i + n).join(' '));
  return out;
}

/** Matched N-grams between two multisets: Σ over N-grams of min(count in a, count in b). */
function clippedOverlap(a: readonly string[], b: readonly string[]): number {
  const counts = new Map<string, number>();
  for (const g of b) counts.set(g, (counts.get(g) ?? 0) + 1);
  let matched = 0;
  for (const g of a) {
    const left = counts.get(g) ?? 0;
    if (left > 0) {
      matched++;
      counts.set(g, left - 1);
    }
  }
  return matched;
}

/** ROUGE-N F1 (N ≥ 1) between a hypothesis and a reference. */
export function rougeN(hypothesis: string, reference: string, n: number): number {
  const hyp = ngrams(rougeTokens(hypothesis), n);
  const ref = ngrams(rougeTokens(reference), n);
  return f1(clippedOverlap(hyp, ref), hyp.length, ref.length);
}

/** Length of the longest common subsequence of two token sequences. */
export function lcsLength(a: readonly string[], b: readonly string[]): number {
  // prev[j] = LCS(a[:i-1], b[:j]), one DP row at a time.
  let prev = new Array<number>(b.length + 1).fill(0);
  for (let i = 1; i <= a.length; i++) {
    const cur = [0];
    for (let j = 1; j <= b.length; j++) {
      cur.push(a[i - 1] === b[j - 1] ? prev[j - 1]! + 1 : Math.max(prev[j]!, cur[j - 1]!));
    }
    prev = cur;
  }
  return prev[b.length]!;
}

/** ROUGE-L F1 (longest common subsequence) between a hypothesis and a reference. */
export function rougeL(hypothesis: string, reference: string): number {
  const hyp = rougeTokens(hypothesis);
  const ref = rougeTokens(reference);
  return f1(lcsLength(hyp, ref), hyp.length, ref.length);
}

export interface RougeScores {
  rouge1: number;
  rouge2: number;
  rougeL: number;
}

/** ROUGE-1, ROUGE-2 and ROUGE-L F1 of a hypothesis against a reference. */
export function rougeScores(hypothesis: string, reference: string): RougeScores {
  return {
    rouge1: rougeN(hypothesis, reference, 1),
    rouge2: rougeN(hypothesis, reference, 2),
    rougeL: rougeL(hypothesis, reference),
  };
}
