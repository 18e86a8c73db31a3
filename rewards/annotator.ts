/**
 * The annotator port of the thinking-reward stage (docs/architecture.md §3): something that scores (example, response)
 * pairs for reasoning quality in steps of 0.1, to make the reward model's training data. Two adapters:
 *  - `ProgrammaticAnnotator` (here): the judge of `judge.ts`, for the built-in tiny world, whose examples carry
 *    their true steps. Pure, instant, free;
 *  - `OpenAiCompatibleAnnotator` (`llm-annotator.ts`): an LLM judge behind an OpenAI-compatible endpoint, for real
 *    data. A run names the judge (`{ kind: judge, name }`); its endpoint, model and key are configured on the
 *    workers (`judges.ts`, `SOPHIA_JUDGES`), so no request can choose where a worker sends a secret.
 * Callers depend on the `Annotator` interface only, so a stage can be pointed at either by configuration.
 */
import type { Example } from '../tasks/types';
import { judgeResponse } from './judge';

export interface AnnotationRequest {
  example: Example;
  /** The full sampled response, `<think>…</think><answer>…</answer>`. */
  response: string;
}

export interface Annotation {
  /** Reasoning quality in [0, 1], a multiple of 0.1. */
  score: number;
  /** What the annotator said, verbatim (an LLM's reply), for audits. */
  raw?: string;
  /** Why points were lost, when the annotator says. */
  notes?: string[];
}

export interface Annotator {
  /** Recorded with the annotations (`programmatic`, `llm:<model>`). */
  readonly name: string;
  /**
   * One annotation per request, in the same order. Rejects when any request cannot be annotated. `onProgress(done,
   * total)` follows annotations as they complete (a judge over HTTP takes hours for paper-scale data: the activity
   * heartbeats on it).
   */
  annotate(items: AnnotationRequest[], onProgress?: (done: number, total: number) => void): Promise<Annotation[]>;
}

export class ProgrammaticAnnotator implements Annotator {
  readonly name = 'programmatic';

  annotate(items: AnnotationRequest[], onProgress?: (done: number, total: number) => void): Promise<Annotation[]> {
    const out = items.map(({ example, response }) => {
      const { score, notes } = judgeResponse(example, response);
      return { score, notes };
    });
    onProgress?.(out.length, items.length);
    return Promise.resolve(out);
  }
}
