"""Example progcodec plugin: a progressive block-KLT (PCA) codec.

Each 4x4 RGB block (48 values) is projected on a basis learned from photos (``train.py``).
Layer 1 carries the first coefficient of every block (a 1/4-scale preview), layer 2 the next
7, layer 3 the remaining 40. The prior of a coefficient is a zero-mean Gaussian whose scale
is the learned per-coefficient deviation, modulated from layer 2 on by the magnitude of the
block's already decoded coefficients: a pure function of the layers decoded so far.
"""
from .model import KLTCodec

__all__ = ["KLTCodec"]
