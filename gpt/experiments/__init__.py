"""The experiments the examples run, apart from the shipped model and training code: the transfer protocol
(transfer.py) with its genre runs (genre_runs.py) and speaker task (speaker_task.py), the label-count curves
(label_curve.py), instruction data generated from the plays (play_instructions.py), and pretrained models
cached by what decides their weights (pretrain_cache.py)."""
