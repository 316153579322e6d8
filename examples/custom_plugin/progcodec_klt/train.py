"""Learn the KLT basis from photos: ``python -m progcodec_klt.train IMAGE [IMAGE ...]``.

Training here is closed-form (PCA of 4x4 RGB blocks); a neural plugin would run its
optimizer instead. Either way: save tensors with safetensors (never pickle) next to the
code, so they install with the package and their digest identifies them in every stream.
"""
import argparse

import torch
from PIL import Image
from safetensors.torch import save_file

from progcodec.image import to_tensor

from .model import WEIGHTS, blocks


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("images", nargs="+")
    args = ap.parse_args()
    vecs = []
    for path in args.images:
        x = to_tensor(Image.open(path))
        h, w = x.shape[-2] // 4 * 4, x.shape[-1] // 4 * 4
        vecs.append(blocks(x[..., :h, :w] * 255))
    v = torch.cat(vecs).double()
    mean = v.mean(0)
    eigval, eigvec = torch.linalg.eigh(torch.cov((v - mean).T))
    order = eigval.argsort(descending=True)
    basis = eigvec[:, order]
    basis *= torch.sign(basis[0:1, :] + 1e-12)  # fix the sign so training is reproducible
    sigma = eigval[order].clamp_min(1e-6).sqrt()
    save_file({"basis": basis.float().contiguous(), "mean": mean.float(), "sigma": sigma.float()}, str(WEIGHTS))
    print(f"{WEIGHTS}: basis from {v.shape[0]} blocks; first sigmas {sigma[:4].tolist()}")


if __name__ == "__main__":
    main()
