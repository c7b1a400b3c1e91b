"""python -m gpt.train: see gpt/train/cli.py."""
from gpt.train.cli import main

main()
