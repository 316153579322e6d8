"""QRes-VAE (Duan et al., WACV 2023), scaled down: 12 latent blocks, one bitstream layer each."""
