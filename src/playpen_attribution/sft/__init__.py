"""Stage 2, SFT: the model and chat template, LoRA training with TRL, sparse logits."""
