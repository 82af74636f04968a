"""Training recipes (pretraining, SFT with LoRA and friends, alignment) and the adapter registry."""
