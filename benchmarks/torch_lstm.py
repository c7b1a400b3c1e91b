"""The PyTorch twin of gpt.lstm.LSTMLM without AWD-LSTM's dropouts (nn.Embedding -> nn.LSTM -> nn.Linear),
loaded with our weights: the peer of the LSTM rows. Benchmark-only, as benchmarks/torch_gpt.py, and run
the same way, in a process of its own with PyTorch's own OpenMP defaults:

    python -m benchmarks.torch_lstm train THREADS ROUNDS PER_ROUND

prints one JSON line. One nn.LSTM of all the layers: PyTorch's fastest way to run the stack.
"""
import json
import sys

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F


class TorchLSTMLM(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.encoder = nn.Embedding(config.vocab_size, config.n_embd)
        self.rnn = nn.LSTM(config.n_embd, config.n_hidden, config.n_layer, batch_first=True)
        self.decoder = nn.Linear(config.n_hidden, config.vocab_size)

    @classmethod
    def from_ours(cls, model):
        """A twin holding copies of our weights: our layer k's `rnns.k.weight_ih_l0` is its `rnn.weight_ih_l{k}`."""
        twin = cls(model.config)
        state = {}
        for name, value in model.state_dict().items():
            if name.startswith("rnns."):
                _, k, param = name.split(".")
                name = f"rnn.{param[:-1]}{k}"
            state[name] = torch.from_numpy(np.array(value, dtype=np.float32))
        twin.load_state_dict(state)
        return twin

    def forward(self, idx, targets):
        logits = self.decoder(self.rnn(self.encoder(idx))[0])
        return logits, F.cross_entropy(logits.view(-1, logits.shape[-1]), targets.view(-1))

    def configure_optimizers(self, weight_decay, learning_rate, betas):
        """AdamW decaying the 2-D weights only, as ours (gpt.model.configure_adamw); foreach: PyTorch's fastest."""
        params = list(self.parameters())
        groups = [{"params": [p for p in params if p.dim() >= 2], "weight_decay": weight_decay},
                  {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0}]
        return torch.optim.AdamW(groups, lr=learning_rate, betas=betas, foreach=True)


def main(argv):
    kind, threads, rounds, per_round = argv[0], int(argv[1]), int(argv[2]), int(argv[3])
    if kind != "train":
        raise SystemExit(f"unknown kind {kind!r}: train")
    torch.set_num_threads(threads)
    from nanograd.kernels.runtime import keep_freed_memory

    keep_freed_memory()
    from benchmarks.configs import LSTM_CONFIG, make_batch, median_seconds
    from benchmarks.torch_gpt import torch_step
    from gpt.lstm import LSTMConfig, LSTMLM  # after torch: its OpenMP runtime has read the environment already

    model = TorchLSTMLM.from_ours(LSTMLM(LSTMConfig(**LSTM_CONFIG["config"]), seed=0))
    step = torch_step(model, model.configure_optimizers(0.1, 1e-3, (0.9, 0.99)))
    idx, targets = make_batch("lstm")
    first_loss = step(idx, targets)
    step(idx, targets)  # warm-up
    print(json.dumps({"first_loss": first_loss, "seconds": median_seconds(lambda: step(idx, targets), rounds,
                                                                           per_round)}))


if __name__ == "__main__":
    main(sys.argv[1:])
