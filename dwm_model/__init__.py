"""dwm_model: learn from triplet shards: loader, conditioned transformer, LoRA trainer, sampling."""
