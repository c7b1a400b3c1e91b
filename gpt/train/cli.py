"""Train a GPT on a text corpus from the command line (the trainer itself is gpt/train/trainer.py).

    python -m gpt.train --data shakespeare --max-iters 2000 --out-dir out/shakespeare
    python -m gpt.train --out-dir out/shakespeare --resume        # continue exactly where it stopped
    python -m gpt.train --ranks 2 ...                             # two data-parallel processes (MPI)

Every TrainConfig field is a flag (`out_dir` -> `--out-dir`); `--help` lists them with their defaults.
"""
import argparse
import dataclasses
import signal
import sys

import nanograd
from gpt.train import distributed, interrupt, launch, preflight, resume
from gpt.train.trainer import TrainConfig, Trainer, TrainingDiverged
from tokenizer.progress import is_terminal


def build_arg_parser(description=__doc__):
    """Flags for every TrainConfig field, plus --threads."""
    parser = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    for f in dataclasses.fields(TrainConfig):
        flag, help = "--" + f.name.replace("_", "-"), f.metadata["help"]
        if f.type in (bool, bool | None):
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, default=f.default, help=help)
        else:
            shown = "" if f.default is None else " (default: %(default)s)"  # None: the help says what decides it
            parser.add_argument(flag, type=f.type, default=f.default, help=help + shown)
    parser.add_argument("--threads", type=int, default=None,
                        help="threads for the numba kernels and OpenBLAS (default: this machine's cores shared "
                             "among its MPI ranks, at most 2; so 1 per rank for mpirun -n 2 on 2 cores)")
    parser.add_argument("--ranks", type=int, default=None,
                        help="train as this many data-parallel MPI processes, launched through mpiexec: the same as "
                             "`mpirun -n N` before the command (needs the mpi extra). Default: 1, except in examples/"
                             "train_shakespeare.py, which picks 2 where it can (--ranks 1 trains in one process)")
    return parser


def main(argv=None, description=__doc__, auto_ranks=False):
    """Train from command-line flags. `auto_ranks`: without a --ranks flag, train as the processes
    launch.auto_ranks picks for this machine (the front door's choice) instead of in this process alone.
    A run stopped by Ctrl-C or SIGTERM exits with 128 + the signal's number (gpt/train/interrupt.py)."""
    parser = build_arg_parser(description)
    args = parser.parse_args(argv)
    given = resume.given_flags(parser, argv, [f.name for f in dataclasses.fields(TrainConfig)])
    world = distributed.World()  # until MPI is connected, failures exit this process alone
    with interrupt.sigterm_as_ctrl_c():
        try:
            config = TrainConfig(**{f.name: getattr(args, f.name) for f in dataclasses.fields(TrainConfig)})
            if distributed.launched_size() is None:  # this process would start the ranks: bad input stops here
                preflight.check_run(config, given)
            # Only a program started as `python script.py` can be started again as ranks (not one run by %run).
            if args.ranks is None and auto_ranks and sys.argv[0] in sys.orig_argv[1:]:
                args.ranks = launch.auto_ranks(config.batch_size)  # says so when it picks ranks
            # Under --ranks N this process becomes `mpiexec -n N` running the user's command (from code, the module's).
            command = sys.orig_argv[1:] if argv is None else ["-m", "gpt.train", *argv]
            if args.progress is None and is_terminal(sys.stderr):
                command.append("--progress")  # ranks write through the launcher's pipes: only here is the terminal seen
            launch.launch_ranks(args.ranks, command, config.batch_size)
            world = distributed.world()
            nanograd.set_num_threads(args.threads or distributed.default_threads(world))
            trainer = Trainer(config, world, given)
            if world.is_main:
                n_params = trainer.model.num_parameters()
                print(f"{n_params / 1e6:.2f}M parameters, vocab {trainer.model.config.vocab_size}, "
                      f"{len(trainer.data.train):,} train / {len(trainer.data.val):,} val tokens"
                      + (f"; {world.size} MPI ranks" if world.size > 1 else ""))
            result = trainer.train()
        except (TrainingDiverged, OSError, ValueError, RuntimeError) as e:
            world.fail(f"error: {e}")
        except KeyboardInterrupt as e:  # a second signal, or Ctrl-C before training started
            world.fail("interrupted", interrupt.exit_status(getattr(e, "signal", signal.SIGINT)))
    if world.is_main:
        print(f"step {result.step}: train loss {result.train_loss:.4f}, val loss {result.val_loss:.4f}; "
              f"checkpoint, log.csv and loss.png in {config.out_dir}")
        if result.sample:
            print("\n" + result.sample)
    if result.interrupted:  # every rank: mpiexec exits with their status
        sys.exit(interrupt.exit_status(result.interrupted))
    return result


if __name__ == "__main__":
    main()
