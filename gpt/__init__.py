"""A decoder-only transformer (GPT-2's recipe and a modern one) and an AWD-LSTM on nanograd, trained and sampled on CPU.

The package by role, model first:
    model.py, lstm.py, generate.py    the models and generation (KV cache, sampling); read model.py first
    families.py                       the model families by name (--model gpt | lstm)
    checks.py                         what the models and the trainer refuse (settings, ids, targets)
    attention_maps.py, sample.py, chat.py   looking at a model, and the two command lines that talk to one
    storage/       files written atomically, checkpoints, GPT-2 folders, figures
    train/         the trainer, its data, and `python -m gpt.train`
    finetune/      classifier heads (ULMFiT's recipe) and instruction tuning
    experiments/   the transfer experiments the examples run (genre, speaker, label curves)

What users call is here:
    model = GPT(GPTConfig(...)); logits, loss = model(idx, targets); model.generate(idx, 100)
    result = Trainer(TrainConfig(max_iters=100)).train()
    model, tok = load_model("out/shakespeare/ckpt")
"""
from gpt.attention_maps import attention_maps
from gpt.generate import stream_text
from gpt.lstm import LSTMLM, LSTMConfig
from gpt.model import GPT, GPTConfig
from gpt.storage import (Checkpoint, CheckpointError, load_checkpoint, load_model, load_pretrained, save_checkpoint,
                         save_pretrained)
from gpt.train import TrainConfig, Trainer, TrainResult

__all__ = ["GPT", "GPTConfig", "LSTMLM", "LSTMConfig", "stream_text", "attention_maps", "Checkpoint",
           "CheckpointError", "load_checkpoint", "load_model", "save_checkpoint", "load_pretrained",
           "save_pretrained", "Trainer", "TrainConfig", "TrainResult"]
