"""QRes-VAE's training objective measures what the range coder spends."""
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import progcodec
from progcodec import registry
from progcodec.image import to_tensor

DATA = Path(__file__).parent / "data"


@pytest.fixture(scope="module")
def model():
    return registry.load("qres-vae", "low")


@pytest.fixture(scope="module")
def photo():
    return Image.open(DATA / "photo_128.png").convert("RGB").crop((0, 0, 128, 64))  # no padding


def test_hard_training_rate_is_the_coded_rate(model, photo):
    """quant='hard' bits per block are what each layer's payload costs: never less (the coder
    is within 1% + a few bytes of ideal), and more only where a residual is so unlikely under
    the prior that the coder escapes it for fewer bits than its clamped training cost."""
    data = progcodec.encode(photo, model="qres-vae", rate="low")
    sizes = np.array(progcodec.info(data).layer_sizes) * 8
    with torch.no_grad():
        _, hard = model.net(to_tensor(photo), quant="hard")
        _, noisy = model.net(to_tensor(photo), quant="noise")
    hard = np.array([b.item() for b in hard])
    assert np.all(sizes <= 1.01 * hard + 48), (sizes, hard.round())
    assert sizes.sum() >= 0.8 * hard.sum(), (sizes, hard.round())
    assert sum(b.item() for b in noisy) > 1.2 * sizes.sum()


def test_hard_training_reconstruction_is_the_decoded_image(model, photo):
    with torch.no_grad():
        x_hat, _ = model.net(to_tensor(photo), quant="hard")
    decoded = progcodec.decode(progcodec.encode(photo, model="qres-vae", rate="low")).tensor
    assert torch.allclose(x_hat.clamp(0, 1), decoded, atol=2 / 255)


def test_unknown_quantization_is_refused(model, photo):
    with pytest.raises(ValueError, match="quant"):
        model.net(to_tensor(photo), quant="gumbel")
