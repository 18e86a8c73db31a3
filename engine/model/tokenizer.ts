/**
 * The tiny world's tokenizer: one token per character of a fixed alphabet, plus special tokens for the response
 * format and sequence boundaries. `<think>`, `</think>`, `<answer>`, `</answer>` are single tokens, so the format
 * costs four tokens and the model cannot half-write a tag.
 *
 *   ids 0–6   <pad> <bos> <eos> <think> </think> <answer> </answer>
 *   ids 7–    ' ' a–z A–F 0–9 and . , : ; ? ! + - = ( ) / '
 */

const SPECIAL_TOKENS = ['<pad>', '<bos>', '<eos>', '<think>', '</think>', '<answer>', '</answer>'] as const;
const BOS = 1;
export const EOS = 2;

/** The characters the model reads and writes, one token each (in id order after the special tokens). */
export const ALPHABET: readonly string[] = [' ', ...'abcdefghijklmnopqrstuvwxyz', ...'ABCDEF', ...'0123456789', ...".,:;?!+-=()/'"];
/** The response-format tags, each a single token: <think> </think> <answer> </answer>. */
export const TAGS: readonly string[] = SPECIAL_TOKENS.slice(3);

export class Tokenizer {
  readonly vocabSize = SPECIAL_TOKENS.length + ALPHABET.length;
  private readonly ids = new Map(ALPHABET.map((ch, i) => [ch, SPECIAL_TOKENS.length + i]));

  /** Token ids of `text`; tags become single tokens. Throws RangeError naming an unknown character. */
  encode(text: string): number[] {
    const out: number[] = [];
    let i = 0;
    while (i < text.length) {
      if (text[i] === '<') {
        const tag = TAGS.findIndex((t) => text.startsWith(t, i));
        if (tag >= 0) {
          out.push(3 + tag);
          i += TAGS[tag]!.length;
          continue;
        }
      }
      const ch = text[i]!;
      const id = this.ids.get(ch);
      if (id === undefined) {
        throw new RangeError(
          `tokenizer: character ${JSON.stringify(ch)} (U+${ch.codePointAt(0)!.toString(16).toUpperCase().padStart(4, '0')}) at position ${i} is not in the alphabet; use lowercase letters, A–F, digits, spaces and . , : ; ? ! + - = ( ) / '`,
        );
      }
      out.push(id);
      i++;
    }
    return out;
  }

  /** Text of token ids; <pad>, <bos> and <eos> are left out, tags written as tags. */
  decode(ids: ArrayLike<number>): string {
    let text = '';
    for (let k = 0; k < ids.length; k++) {
      const id = ids[k]!;
      if (!Number.isInteger(id) || id < 0 || id >= this.vocabSize) throw new RangeError(`tokenizer: id ${id} is outside [0, ${this.vocabSize})`);
      if (id <= EOS) continue;
      text += id < SPECIAL_TOKENS.length ? SPECIAL_TOKENS[id] : ALPHABET[id - SPECIAL_TOKENS.length];
    }
    return text;
  }

  /** The model's prompt for a question: <bos> question. */
  prompt(question: string): number[] {
    return [BOS, ...this.encode(question)];
  }

  /** A response as the model should write it: the text, then <eos>. */
  response(text: string): number[] {
    return [...this.encode(text), EOS];
  }
}
