import { describe, expect, it } from 'vitest';
import { editDistance, lcsLength, rougeL, rougeN, rougeScores, rougeTokens, werTokens, wordErrorRate } from './text-metrics';

describe('tokenization', () => {
  it('WER splits the trimmed, lowercased text on whitespace and keeps punctuation', () => {
    expect(werTokens('  Hello,\tWORLD \n again ')).toEqual(['hello,', 'world', 'again']);
    expect(werTokens('   ')).toEqual([]);
  });

  it('ROUGE splits on runs of non-alphanumerics, lowercases, drops empty tokens', () => {
    expect(rougeTokens('The cat -- sat, on the MAT!')).toEqual(['the', 'cat', 'sat', 'on', 'the', 'mat']);
    expect(rougeTokens("it's 4719-3802")).toEqual(['it', 's', '4719', '3802']);
    expect(rougeTokens('Café crème')).toEqual(['café', 'crème']);
    expect(rougeTokens(' ... ')).toEqual([]);
  });
});

describe('editDistance', () => {
  it.each([
    [[], [], 0],
    [['a'], [], 1],
    [[], ['a', 'b'], 2],
    [['a', 'b', 'c'], ['a', 'b', 'c'], 0],
    [['a', 'b', 'c'], ['a', 'x', 'c'], 1],
    [['a', 'b', 'c', 'd'], ['a', 'x', 'c'], 2],
    [['kitten'], ['sitting'], 1], // words are atoms: one substitution
    [['a', 'b'], ['b', 'a'], 2],
  ])('%j → %j: %d', (a, b, d) => {
    expect(editDistance(a, b)).toBe(d);
  });
});

describe('wordErrorRate', () => {
  it.each([
    ['hello world', 'hello world', 0],
    ['Hello   World', 'hello world', 0],
    ['4719 3803', '4719 3802', 1 / 2], // one substitution over 2 reference words
    ['4719', '4719 3802', 1 / 2], // one deletion
    ['4719 3802 1111', '4719 3802', 1 / 2], // one insertion
    ['a b c d', 'a x c', 2 / 3], // substitution b→x, insertion d
    ['1 2 3 4 5 6', '1', 5], // not capped at 1
    ['', 'a b', 1],
    ['', '', 0],
    ['  ', '', 0],
    ['x', '', 1],
  ])('hyp %j, ref %j → %d', (hyp, ref, wer) => {
    expect(wordErrorRate(hyp, ref)).toBe(wer);
  });
});

describe('ROUGE', () => {
  const ref = 'the cat sat on the mat';

  it('is 1 for identical token sequences, ignoring case and punctuation', () => {
    expect(rougeScores('The cat, sat on the MAT!', ref)).toEqual({ rouge1: 1, rouge2: 1, rougeL: 1 });
  });

  it('scores a prefix: P = 1, R = 3/6 (unigrams) and 2/5 (bigrams)', () => {
    const r = rougeScores('the cat sat', ref);
    expect(r.rouge1).toBeCloseTo(2 / 3, 12);
    expect(r.rouge2).toBeCloseTo(4 / 7, 12); // 2 · 1 · 0.4 / 1.4
    expect(r.rougeL).toBeCloseTo(2 / 3, 12); // LCS 3
  });

  it('separates bag-of-words from order: reversed text has ROUGE-1 = 1, ROUGE-2 = 0, ROUGE-L = 0.5', () => {
    const r = rougeScores('mat the on sat cat the', ref);
    expect(r.rouge1).toBe(1);
    expect(r.rouge2).toBe(0);
    expect(lcsLength(rougeTokens('mat the on sat cat the'), rougeTokens(ref))).toBe(3); // e.g. "the on the"
    expect(r.rougeL).toBeCloseTo(0.5, 12);
  });

  it('clips repeated n-grams to the reference count', () => {
    // "the" ×3 in the hypothesis matches once: P = 1/3, R = 1/2, F1 = 0.4.
    expect(rougeN('the the the', 'the cat', 1)).toBeCloseTo(0.4, 12);
    expect(rougeN('the the the', 'the cat', 2)).toBe(0);
    expect(rougeL('the the the', 'the cat')).toBeCloseTo(0.4, 12);
  });

  it('is 0 without overlap, with an empty side, or without bigrams', () => {
    expect(rougeScores('dog', 'cat')).toEqual({ rouge1: 0, rouge2: 0, rougeL: 0 });
    expect(rougeScores('', 'cat')).toEqual({ rouge1: 0, rouge2: 0, rougeL: 0 });
    expect(rougeScores('cat', '')).toEqual({ rouge1: 0, rouge2: 0, rougeL: 0 });
    expect(rougeScores('cat', 'cat')).toEqual({ rouge1: 1, rouge2: 0, rougeL: 1 });
  });

  it('computes LCS lengths', () => {
    expect(lcsLength([], ['a'])).toBe(0);
    expect(lcsLength(['a', 'b', 'c', 'd'], ['b', 'd'])).toBe(2);
    expect(lcsLength(['a', 'b', 'c'], ['c', 'b', 'a'])).toBe(1);
  });
});
