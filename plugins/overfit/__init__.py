"""``overfit``: a codec fitted per image (latent grids + tiny networks, after C3 and Cool-chic)."""
