"""Talk to an instruction-tuned checkpoint: type an instruction (and an optional input), read the response
as it is generated, repeat; Ctrl-D (end of input) quits.

    python -m gpt.chat --ckpt out/instruct/ckpt
    printf 'Who speaks next?\\nHAMLET:\\nTo be, or not to be: that is the question:\\n\\n\\n' \\
        | python -m gpt.chat --ckpt PATH

Each turn reads one line, the instruction, then the input: nothing if the next line is empty, else every
line up to two empty lines in a row (so an input may hold speeches separated by one blank line). The
response is greedy (--temperature 0) by default and ends at the end-of-response marker or after
--max-new-tokens. Each turn is independent: the model sees one instruction at a time, as it was trained.
"""
import argparse
import sys

from gpt.generate import stream_text
from gpt.finetune.instruction_data import format_prompt
from gpt.finetune.instruction_tuning import load_instruct_model


def read_turn(lines):
    """(instruction, input) from an iterator of lines (without newlines), or None at the end of input."""
    instruction = next(lines, None)
    while instruction is not None and not instruction.strip():
        instruction = next(lines, None)  # blank lines between turns
    if instruction is None:
        return None
    body = []
    for line in lines:
        if not line and (not body or body[-1] == ""):
            break  # an empty line first (no input), or the second empty line in a row
        body.append(line)
    return instruction.strip(), "\n".join(body).strip("\n")


def chat(model, vocab, stdin, stdout, max_new_tokens, temperature, top_k, seed, interactive=False):
    """Run the read-respond loop until stdin ends; returns the number of turns."""
    if interactive:
        print("Type an instruction, then its input (or an empty line for none; end an input with two empty "
              "lines). Ctrl-D quits.", file=sys.stderr)
    lines, turns = _read_lines(stdin, interactive), 0
    while (turn := read_turn(lines)) is not None:
        instruction, text = turn
        stdout.write("### Response:\n")
        try:
            for piece in stream_text(model, vocab, format_prompt(instruction, text), max_new_tokens, temperature,
                                     top_k, seed=seed, stop_id=vocab.end_id):
                stdout.write(piece)
                stdout.flush()
        except ValueError as e:  # a character the vocabulary lacks: say so and take the next turn
            stdout.write(f"[error: {e}]")
        stdout.write("\n\n")
        stdout.flush()
        turns += 1
    return turns


def _read_lines(stream, interactive):
    """The lines of `stream` without newlines; on a terminal each is prompted for on stderr."""
    while True:
        if interactive:
            print("> ", end="", file=sys.stderr, flush=True)
        line = stream.readline()
        if not line:
            return
        yield line.rstrip("\r\n")


def build_arg_parser():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ckpt", required=True, help="checkpoint directory (instruction-tuned, or any to see "
                                                      "an untuned model answer)")
    parser.add_argument("--max-new-tokens", type=int, default=100, help="longest response in tokens")
    parser.add_argument("--temperature", type=float, default=0.0, help="0 = greedy (default); higher = more random")
    parser.add_argument("--top-k", type=int, default=None, help="sample only among the k most likely tokens")
    parser.add_argument("--seed", type=int, default=None, help="seed for reproducible sampling")
    return parser


def main(argv=None):
    args = build_arg_parser().parse_args(argv)
    try:
        model, vocab, tuned = load_instruct_model(args.ckpt)
    except (OSError, ValueError, RuntimeError) as e:
        sys.exit(f"error: {e}")
    if not tuned:
        print(f"note: {args.ckpt} was not instruction-tuned; its end-of-response marker is untrained",
              file=sys.stderr)
    try:
        chat(model, vocab, sys.stdin, sys.stdout, args.max_new_tokens, args.temperature, args.top_k, args.seed,
             interactive=sys.stdin.isatty())
    except KeyboardInterrupt:
        sys.exit("\ninterrupted")


if __name__ == "__main__":
    main()
