"""What every training loop here shares: one optimizer step, and the bookkeeping of evaluations.

Pretraining (gpt/train/trainer.py), classifier fine-tuning (gpt/finetune/classifier.py) and instruction tuning
(gpt/finetune/instruction_tuning.py) differ in their batches, schedules and evaluations; the step itself and,
for the two fine-tunes, what is done with an evaluation's score are the same, and live here. A fine-tune reads:

    stopper = EarlyStopping(model, steps, every=50, patience=3)

    def evaluate(step):  # True when training should stop
        val_loss = validation_loss(model)
        return stopper.record(step, -val_loss, val_loss)  # the score: higher is better

    evaluate(0)
    for step in range(1, steps + 1):
        lr = optim.cosine_lr(step - 1, 1e-3, 1e-4, 20, steps)
        loss, _ = optimizer_step(model, optimizer, lr, batch_loss)  # batch_loss() -> a fresh batch's loss
        stopper.train_losses.append(loss)
        if stopper.due(step) and evaluate(step):
            break
    stopper.restore()  # the weights of the best evaluation

Nothing here changes the arithmetic of a loop written out by hand: the same operations run in the same order.
"""
import numpy as np

from nanograd import optim


def optimizer_step(model, optimizer, lr, batch_loss, grad_accum=1, grad_clip=1.0, after_backward=None,
                   before_step=None):
    """One step of `optimizer` on `model`; returns (mean loss: float, gradient norm before clipping or None).

    lr: one learning rate for every parameter group, or a list with one per group (discriminative rates); a
    group's `lr_scale`, if it has one, multiplies it.
    batch_loss() -> scalar loss Tensor of a fresh micro-batch; it is called `grad_accum` times, and each loss
    is backpropagated before the next forward pass, so only one graph is alive at a time.
    after_backward(loss) -> loss runs once the gradients are complete and before they are clipped: the
    trainer averages the gradients (and the loss) over its MPI ranks there. grad_clip=0 leaves them unclipped.
    before_step(norm) runs after clipping, before the weights change: the trainer refuses a non-finite norm
    there, so a diverged step never reaches the weights.
    """
    rates = lr if isinstance(lr, list) else [lr] * len(optimizer.param_groups)
    for group, rate in zip(optimizer.param_groups, rates, strict=True):
        group["lr"] = rate * group.get("lr_scale", 1.0)  # Muon's groups run at a multiple of AdamW's rate
    optimizer.zero_grad()
    total = 0.0
    for _ in range(grad_accum):
        loss = batch_loss()
        # Dividing by grad_accum makes the summed gradients those of the mean over all micro-batches.
        (loss / grad_accum).backward()
        total += loss.item() / grad_accum
    if after_backward is not None:
        total = after_backward(total)
    norm = optim.clip_grad_norm_(model.parameters(), grad_clip) if grad_clip > 0 else None
    if before_step is not None:
        before_step(norm)
    optimizer.step()
    return total, norm


class EarlyStopping:
    """The evaluations of a fine-tune: when they are due, the curve they draw, the weights of the best one.

    An evaluation is due at step 0, every `every` steps and at the last step (`steps`). Each is recorded with
    a score, higher is better (a tuple compares item by item, so (accuracy, -loss) breaks accuracy ties by the
    loss); the model's weights at the best score are copied, and `restore()` puts them back at the end.
    patience=k ends training after k evaluations in a row without a better score (None: never).
    """

    def __init__(self, model, steps, every, patience=None):
        self.model, self.steps, self.every, self.patience = model, steps, every, patience
        self.train_losses = []  # the training losses since the last evaluation, appended by the loop
        self.curve = []  # (step, mean training loss since the previous point, metric) per evaluation
        self.best_step, self.best_score, self.best_state, self.stale = None, None, None, 0

    def due(self, step):
        return step % self.every == 0 or step == self.steps

    def record(self, step, score, metric):
        """Note the evaluation at `step` (its `metric` goes on the curve); returns True when training should stop."""
        losses = self.train_losses
        self.curve.append((step, float(np.mean(losses)) if losses else float("nan"), metric))
        losses.clear()
        if self.best_score is None or score > self.best_score:
            self.best_step, self.best_score, self.stale = step, score, 0
            self.best_state = {name: array.copy() for name, array in self.model.state_dict().items()}
        else:
            self.stale += 1
        return self.patience is not None and self.stale >= self.patience

    def restore(self):
        """Load the weights of the best evaluation back into the model."""
        self.model.load_state_dict(self.best_state)
