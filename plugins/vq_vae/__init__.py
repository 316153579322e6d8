"""``vq-vae``: a two-level VQ-VAE with an entropy-coded top map and a learned conditional prior."""
