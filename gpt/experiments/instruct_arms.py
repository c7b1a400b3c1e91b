"""The arms of the instruction-tuning experiment (examples/finetune_instructions.py), trained side by side.

An arm is one network trained on the instruction records: fine-tuned from the pretrained weights (the prompt
masked or not), or the same network from a random start. Every arm reads the same records in the same
batches (the same batch seed), so their accuracies differ by what they started from and what the loss counts.

Arms are independent, so on a machine of several cores each gets its own process with one thread
(`train_arms`): a 4-layer, 128-wide model's matrices are too small for two threads to halve a step, while two
processes do twice the work in the same time. Results come back pickled, the weights included; the numbers
are those of the same arm trained alone on one thread.
"""
import multiprocessing
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass

import numpy as np

import nanograd
from gpt.finetune.instruction_data import greedy_correct
from gpt.finetune.instruction_tuning import fine_tune
from gpt.model import GPT, GPTConfig
from tokenizer.progress import draws_bar


@dataclass(frozen=True)
class Arm:
    method: str  # its name in the report, e.g. "fine-tuned"
    pretrained: bool  # start from the pretrained weights (else from a random initialisation)
    mask_prompt: bool  # the loss on the response tokens only (else on the prompt's too)
    lr: float  # peak learning rate


@dataclass
class ArmResult:
    correct: np.ndarray  # bool (N,): greedy exact match on each test record
    state: dict  # the trained weights (state_dict)
    result: object  # TuneResult: best step, best validation loss, curve
    seconds: float


def train_arm(arm, config, base_state, vocab, data, settings, seed, progress=None, threads=None):
    """Train one arm and score it on the test records. data: (train, val, test) encoded records; settings:
    fine_tune's steps, batch_size, eval_every, patience. Returns an ArmResult."""
    if threads is not None:
        nanograd.set_num_threads(threads)
    started = time.perf_counter()
    model = GPT(GPTConfig(**vars(config)), seed=seed + 1)
    if arm.pretrained:
        model.load_state_dict(base_state)
    train, val, test = data
    result = fine_tune(model, vocab, train, val, settings["steps"], settings["batch_size"], arm.lr,
                       np.random.default_rng([seed, 1]), settings["eval_every"], settings["patience"],
                       arm.mask_prompt, progress=progress, desc=arm.method)
    return ArmResult(greedy_correct(model, test), model.state_dict(), result, time.perf_counter() - started)


def train_arms(arms, config, base_state, vocab, data, settings, seed, workers=1, progress=None):
    """{method: ArmResult} of every arm: one after the other in this process (workers=1), or in `workers`
    processes of one thread each. Side by side, on a terminal only the first arm draws a progress bar (two
    bars would overwrite each other's line); away from one each arm prints its own labelled lines."""
    if workers <= 1 or len(arms) <= 1:
        return {arm.method: train_arm(arm, config, base_state, vocab, data, settings, seed, progress)
                for arm in arms}
    shows = [progress if k == 0 or not draws_bar(progress) else False for k in range(len(arms))]
    context = multiprocessing.get_context("spawn")  # a fresh interpreter: no forked thread pools or locks
    with ProcessPoolExecutor(min(workers, len(arms)), mp_context=context) as pool:
        futures = [pool.submit(train_arm, arm, config, base_state, vocab, data, settings, seed, show, 1)
                   for arm, show in zip(arms, shows)]
        return {arm.method: future.result() for arm, future in zip(arms, futures)}
