"""A decoder-only transformer (GPT-2 architecture) on nanograd, trained and sampled on CPU."""
