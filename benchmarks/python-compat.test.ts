import { describe, expect, it } from 'vitest';
import { levenshtein, parsePythonFloat, parsePythonStringList, pythonRound } from './python-compat';

describe('parsePythonFloat (Python float())', () => {
  it.each([
    ['1e3', 1000],
    [' 5 ', 5],
    ['.5', 0.5],
    ['5.', 5],
    ['+3', 3],
    ['-Infinity', -Infinity],
    ['inf', Infinity],
  ])('reads %j as %d', (text, want) => {
    expect(parsePythonFloat(text)).toBe(want);
  });

  it('reads nan, and refuses what float() refuses', () => {
    expect(parsePythonFloat('NaN')).toBeNaN();
    for (const text of ['1,000', 'abc', '1.2.3', '', '12 cm', '0x10']) expect(parsePythonFloat(text)).toBeNull();
  });
});

describe('pythonRound (Python round(x, n))', () => {
  // Golden values printed by CPython 3.11: round(x, n).
  it.each([
    [0.125, 2, 0.12], // an exact tie goes to even
    [0.375, 2, 0.38],
    [-0.125, 2, -0.12],
    [2.675, 2, 2.67], // 2.675 is 2.67499… in binary
    [1.45, 1, 1.4],
    [1.449999, 2, 1.45],
    [2.5, 0, 2],
    [3.5, 0, 4],
    [131253.46, 1, 131253.5],
    [-1.005, 2, -1],
  ])('round(%d, %d) = %d', (x, digits, want) => {
    expect(pythonRound(x, digits)).toBe(want);
  });
});

describe('parsePythonStringList', () => {
  it('reads the stringified lists MMMU publishes', () => {
    expect(parsePythonStringList("['24/7', '3.429']")).toEqual(['24/7', '3.429']);
    expect(parsePythonStringList(`["it's", 'a\\'b', 'x\\\\y']`)).toEqual(["it's", "a'b", 'x\\y']);
    expect(parsePythonStringList('[]')).toEqual([]);
    expect(parsePythonStringList("['a',]")).toEqual(['a']);
  });

  it('returns null for anything else', () => {
    for (const text of ['[1, 2]', "['a' 'b']", "['a", 'abc', "['a'] x"]) expect(parsePythonStringList(text)).toBeNull();
  });
});

describe('levenshtein', () => {
  it('counts insertions, deletions and substitutions over code points', () => {
    expect(levenshtein('kitten', 'sitting')).toBe(3);
    expect(levenshtein('', 'abc')).toBe(3);
    expect(levenshtein('145°', '140°')).toBe(1);
    expect(levenshtein('😀a', 'a')).toBe(1);
  });
});
