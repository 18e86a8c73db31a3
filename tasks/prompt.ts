/**
 * An example as the prompt every engine reads: one user message with the example's image and its question. The
 * engine renders it with its model's own template (engine/types.ts `ChatPrompt`).
 */
import type { ChatPrompt } from '../engine/types';
import type { Example } from './types';

export function promptOf(example: Pick<Example, 'image' | 'question'>): ChatPrompt {
  const { size, rgb } = example.image;
  return {
    messages: [
      {
        role: 'user',
        content: [
          { type: 'image', image: { width: size, height: size, rgb } },
          { type: 'text', text: example.question },
        ],
      },
    ],
  };
}

/** The prompts of `examples` in order (row i of a batch continues prompt i unless it says otherwise). */
export function promptsOf(examples: readonly Pick<Example, 'image' | 'question'>[]): ChatPrompt[] {
  return examples.map(promptOf);
}
