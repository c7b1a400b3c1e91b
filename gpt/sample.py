"""Sample text from a trained checkpoint, printing it as it is produced.

    python -m gpt.sample --ckpt out/shakespeare/ckpt --prompt "ROMEO:" --max-new-tokens 500 \\
        --temperature 0.8 --top-k 200 --top-p 0.95 --seed 0
    python -m gpt.sample --pretrained path/to/gpt2 --prompt "Hello, I'm a language model,"
    python -m gpt.sample --ckpt out/shakespeare/ckpt --prompt "ROMEO: But soft" --attention-png attn.png
"""
import argparse
import sys
import time

from gpt.attention_maps import draw_prompt_attention
from gpt.storage.checkpoint import load_model
from gpt.generate import stream_text
from gpt.storage.gpt2_folders import load_pretrained


def build_arg_parser():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--ckpt", help="checkpoint directory written by training")
    source.add_argument("--pretrained", help="Hugging Face style GPT-2 folder (config.json, model.safetensors, "
                                             "vocab.json + merges.txt)")
    parser.add_argument("--prompt", default="\n", help="text to continue (default: a newline)")
    parser.add_argument("--max-new-tokens", type=int, default=500, help="tokens to generate")
    parser.add_argument("--temperature", type=float, default=0.8, help="0 = greedy; higher = more random")
    parser.add_argument("--top-k", type=int, default=None, help="sample only among the k most likely tokens")
    parser.add_argument("--top-p", type=float, default=None, help="nucleus sampling: smallest set reaching p")
    parser.add_argument("--seed", type=int, default=None, help="seed for a reproducible sample")
    parser.add_argument("--attention-png", metavar="PATH", default=None,
                        help="also draw which earlier tokens each prompt token attends to, per layer (rows) "
                             "and head (columns), as a PNG at PATH; then sample as usual")
    return parser


def main(argv=None):
    args = build_arg_parser().parse_args(argv)
    try:
        model, tok = load_pretrained(args.pretrained) if args.pretrained else load_model(args.ckpt)
        if args.attention_png:
            draw_prompt_attention(model, tok, args.prompt, args.attention_png)
            print(f"wrote {args.attention_png}", file=sys.stderr)
        start = time.perf_counter()
        pieces = stream_text(model, tok, args.prompt, args.max_new_tokens, args.temperature, args.top_k,
                             args.top_p, args.seed)
        first = next(pieces, "")  # bad options or a prompt outside the vocabulary fail here, before printing
        sys.stdout.write(args.prompt + first)
        for piece in pieces:
            sys.stdout.write(piece)
            sys.stdout.flush()
        elapsed = time.perf_counter() - start
        sys.stdout.write("\n")
        sys.stdout.flush()
        print(f"[{args.max_new_tokens} tokens in {elapsed:.1f} s: {args.max_new_tokens / elapsed:.1f} tokens/s]",
              file=sys.stderr)
    except (OSError, ValueError, RuntimeError) as e:  # a bad checkpoint, a prompt the vocabulary lacks
        sys.exit(f"error: {e}")
    except KeyboardInterrupt:
        sys.exit("\ninterrupted")


if __name__ == "__main__":
    main()
