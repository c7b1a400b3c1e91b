"""Command line: train a tokenizer on a text file, encode text to ids, decode ids to text.

    python -m tokenizer train --input shakespeare.txt --vocab-size 1024 --pattern gpt4 --out out/shk
    python -m tokenizer encode --model out/shk.model --input some.txt > ids.txt
    python -m tokenizer decode --model out/shk.model --input ids.txt
"""

import argparse
import sys
import time
from pathlib import Path

from . import load
from .bpe import ALLOWED_SPECIAL_MODES, BPETokenizer
from .char import CharTokenizer
from .patterns import PATTERNS


def read_input(name: str) -> str:
    return sys.stdin.read() if name == "-" else Path(name).read_text(encoding="utf-8")


def train(args) -> None:
    text = read_input(args.input)
    start = time.perf_counter()
    if args.kind == "char":
        tokenizer = CharTokenizer().train(text)
    else:
        tokenizer = BPETokenizer(PATTERNS[args.pattern]).train(text, args.vocab_size, verbose=True)
    seconds = time.perf_counter() - start
    model_path = tokenizer.save(args.out)
    print(f"trained a {args.kind} tokenizer of {tokenizer.vocab_size} tokens in {seconds:.2f} s -> {model_path}",
          file=sys.stderr)


def encode(args) -> None:
    tokenizer = load(args.model)
    text = read_input(args.input)
    if isinstance(tokenizer, BPETokenizer):
        ids = tokenizer.encode(text, allowed_special=args.allowed_special)
    else:
        ids = tokenizer.encode(text)
    print(" ".join(map(str, ids)))


def decode(args) -> None:
    tokenizer = load(args.model)
    ids = []
    for word in read_input(args.input).split():
        try:
            ids.append(int(word))
        except ValueError:
            raise ValueError(f"ids must be integers separated by whitespace, got {word!r}") from None
    sys.stdout.write(tokenizer.decode(ids))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m tokenizer", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)

    p = commands.add_parser("train", help="learn a vocabulary from a text file and save PREFIX.model/.vocab",
                            description="Learn a vocabulary from a UTF-8 text file (a progress bar on a terminal, else "
                                        "a line every so often, shows the merges) "
                                        "and write PREFIX.model (for loading) and PREFIX.vocab (for reading).")
    p.add_argument("--input", required=True, help="UTF-8 text file to learn from ('-' for stdin)")
    p.add_argument("--out", required=True, help="output prefix: writes PREFIX.model and PREFIX.vocab")
    p.add_argument("--kind", choices=["bpe", "char"], default="bpe",
                   help="byte-level BPE (default) or one id per character")
    p.add_argument("--vocab-size", type=int, default=1024, help="BPE vocabulary size, >= 256 (default 1024)")
    p.add_argument("--pattern", choices=sorted(PATTERNS), default="gpt4",
                   help="pre-split pattern: gpt4 (cl100k, default), gpt2, or none (no splitting)")
    p.set_defaults(run=train)

    p = commands.add_parser("encode", help="print the ids of a text, separated by spaces",
                            description="Encode a UTF-8 text file and print its token ids on one line.")
    p.add_argument("--model", required=True, help="a .model file written by 'train'")
    p.add_argument("--input", default="-", help="text file to encode (default: stdin)")
    p.add_argument("--allowed-special", choices=ALLOWED_SPECIAL_MODES, default="none_raise",
                   help="special-token strings in the text: none_raise (default) fails, all encodes them as "
                        "special ids, none encodes them as plain text")
    p.set_defaults(run=encode)

    p = commands.add_parser("decode", help="print the text of whitespace-separated ids",
                            description="Decode token ids (integers separated by whitespace) back to text.")
    p.add_argument("--model", required=True, help="a .model file written by 'train'")
    p.add_argument("--input", default="-", help="file of ids to decode (default: stdin)")
    p.set_defaults(run=decode)
    return parser


def main(argv=None) -> None:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        args.run(args)
    except (OSError, ValueError) as exc:
        parser.exit(2, f"error: {exc}\n")


if __name__ == "__main__":
    main()
