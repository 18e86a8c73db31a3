import { describe, expect, it } from 'vitest';
import { canonicalJson, hashConfig, hashedSlices, sha256Hex, StreamDigest } from './hashing';

describe('hashing', () => {
  it('matches the sha256 test vector for "abc"', () => {
    expect(sha256Hex(new TextEncoder().encode('abc'))).toBe('ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad');
  });

  it('hashes slices exactly like the whole buffer', () => {
    const data = new Uint8Array(10_001).map((_, i) => (i * 31) & 0xff);
    const digest = new StreamDigest();
    const slices = [...hashedSlices(data, digest, 1_000)];
    expect(slices.length).toBe(11);
    expect(digest.size).toBe(10_001);
    expect(digest.sha256).toBe(sha256Hex(data));
    expect(() => digest.update(data)).toThrow(/after digest/);
  });

  it('hashes configs independently of key order, but not of values', () => {
    expect(canonicalJson({ b: 1, a: { d: [1, { z: 1, y: 2 }], c: null } })).toBe('{"a":{"c":null,"d":[1,{"y":2,"z":1}]},"b":1}');
    expect(hashConfig({ lr: 1e-3, steps: 10 })).toBe(hashConfig({ steps: 10, lr: 1e-3 }));
    expect(hashConfig({ lr: 1e-3, steps: 10 })).not.toBe(hashConfig({ lr: 1e-3, steps: 11 }));
  });
});
