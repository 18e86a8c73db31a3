/**
 * An example as the prompt every engine reads: one user message with the example's image(s) and its question. The
 * engine renders it with its model's own template (engine/types.ts `ChatPrompt`).
 */
import type { ChatPrompt } from '../engine/types';
import { pixelsOf } from './images';
import type { Example } from './types';

export function promptOf(example: Pick<Example, 'image' | 'moreImages' | 'question'>): ChatPrompt {
  const images = [example.image, ...(example.moreImages ?? [])].map((image) => {
    const { width, height, rgb } = pixelsOf(image);
    return { type: 'image' as const, image: { width, height, rgb } };
  });
  return { messages: [{ role: 'user', content: [...images, { type: 'text', text: example.question }] }] };
}

/** The prompts of `examples` in order (row i of a batch continues prompt i unless it says otherwise). */
export function promptsOf(examples: readonly Pick<Example, 'image' | 'moreImages' | 'question'>[]): ChatPrompt[] {
  return examples.map(promptOf);
}
