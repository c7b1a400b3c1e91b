"""The model families a run can train, by name: `--model gpt` (gpt/model.py) or `--model lstm` (gpt/lstm.py).

The trainer, checkpoints and sampling go through these functions and never name a family. A checkpoint's
config.json is the model config as a dict; an LSTM's also holds "model": "lstm" (a GPT's holds no such key,
so GPT checkpoints keep their format).
"""
import dataclasses

from gpt.lstm import LSTMLM, LSTMConfig
from gpt.model import GPT, GPTConfig

MODELS = {"gpt": (GPTConfig, GPT), "lstm": (LSTMConfig, LSTMLM)}


def new_config(model, settings):
    """The config of family `model`, taking from `settings` (a dict such as a TrainConfig's) the fields it has;
    a setting of None leaves the family's default (a GPT's recipe, for its parts)."""
    if model not in MODELS:
        raise ValueError(f"unknown model {model!r}; choose one of {sorted(MODELS)}")
    config_class = MODELS[model][0]
    names = [f.name for f in dataclasses.fields(config_class) if settings.get(f.name) is not None]
    return config_class(**{name: settings[name] for name in names})


def config_to_dict(config):
    d = dataclasses.asdict(config)
    return d if isinstance(config, GPTConfig) else {"model": _name(config), **d}


def config_from_dict(d):
    """The config that config_to_dict wrote as `d` (TypeError or ValueError if it is not one)."""
    d = dict(d)
    family = d.pop("model", "gpt")
    if family not in MODELS:
        raise ValueError(f"unknown model {family!r}; choose one of {sorted(MODELS)}")
    return MODELS[family][0](**d)


def build(config, seed=0):
    """A freshly initialised model of `config`'s family."""
    return MODELS[_name(config)][1](config, seed=seed)


def _name(config):
    return next(name for name, (config_class, _) in MODELS.items() if isinstance(config, config_class))
