/**
 * Answer extraction shared by every benchmark.
 *
 *  1. `extractPrediction`: the prediction is the content of the LAST complete `<answer>…</answer>` in the response
 *     when there is one, else the whole response (both trimmed). Sophia's models answer in the paper's
 *     `<think>…</think><answer>…</answer>` format; the last block is taken because a model that restates its answer
 *     means the final one. Tags are matched case-sensitively, as the outcome-reward format gate does.
 *  2. `cleanAnswer`: a small rule-based stand-in for the GPT "extract the answer" step that the official MathVista
 *     and MathVerse pipelines run before scoring. It only unwraps what models commonly put around a final answer:
 *     the last `\boxed{…}`, a leading "The (final|correct) answer is" / "Answer:", Markdown bold, surrounding `$…$`
 *     and a trailing full stop. MMMU, ChartQA and MMStar score the prediction as it is, as their official rules
 *     read the model's output directly.
 */

const OPEN = '<answer>';
const CLOSE = '</answer>';

/** The text inside the last `<answer>…</answer>`, else the whole response; trimmed. */
export function extractPrediction(response: string): string {
  const close = response.lastIndexOf(CLOSE);
  const open = close < 0 ? -1 : response.lastIndexOf(OPEN, close - OPEN.length);
  return (open < 0 ? response : response.slice(open + OPEN.length, close)).trim();
}

/** The content of the last `\boxed{…}` (braces balanced), or null when there is none or it does not close. */
export function lastBoxed(text: string): string | null {
  const at = text.lastIndexOf('\\boxed{');
  if (at < 0) return null;
  const start = at + '\\boxed{'.length;
  let depth = 1;
  for (let i = start; i < text.length; i++) {
    if (text[i] === '{') depth++;
    else if (text[i] === '}' && --depth === 0) return text.slice(start, i);
  }
  return null;
}

const ANSWER_PREFIX = /^(?:the\s+)?(?:final\s+|correct\s+)?answer\s*(?:is\s*:?|:)\s*/i;

// One unwrapping step each; applied until none changes the text, so their order does not matter.
const CLEANUP_STEPS: readonly ((s: string) => string)[] = [
  (s) => s.replace(ANSWER_PREFIX, ''),
  (s) => s.replace(/^\*\*(.*)\*\*$/s, '$1'),
  (s) => s.replace(/^\$+(.*?)\$+$/s, '$1'),
  (s) => s.replace(/\.$/, ''), // a final full stop ("5." still reads as 5)
];

/** The rule-based extraction step of MathVista and MathVerse (see the module comment). */
export function cleanAnswer(prediction: string): string {
  let s = (lastBoxed(prediction) ?? prediction).trim();
  for (let previous = ''; previous !== s; ) {
    previous = s;
    for (const step of CLEANUP_STEPS) s = step(s).trim();
  }
  return s;
}
