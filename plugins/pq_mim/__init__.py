"""PQ-MIM plugin: product-quantized VAE tokens sent in quincunx stages, MIM entropy model."""
from .plugin import PQMIM

__all__ = ["PQMIM"]
