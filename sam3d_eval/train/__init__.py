"""Training core: loss mixes, curriculum, the loop and its DDP helpers."""
