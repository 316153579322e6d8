import os

import numpy as np
import pytest
from hypothesis import HealthCheck, settings
from PIL import Image

settings.register_profile("default", deadline=None, max_examples=40,
                          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
settings.register_profile("fuzz", deadline=None, max_examples=2000,
                          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
settings.load_profile(os.environ.get("PROGCODEC_HYPOTHESIS", "default"))


def smooth_image(w: int, h: int, seed: int = 0) -> Image.Image:
    """A deterministic photo-like test image (smooth gradients plus some texture)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    img = np.stack([
        128 + 90 * np.sin(xx / (7 + 5 * c) + yy / 11 + c) * np.cos(yy / (9 + 3 * c)) for c in range(3)
    ], axis=-1)
    img += rng.normal(0, 6, img.shape)
    return Image.fromarray(np.clip(img, 0, 255).astype(np.uint8), "RGB")


@pytest.fixture(scope="module")
def one_torch_thread():
    """Decode with one intra-op thread: on a small, shared machine more threads only spin."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def photo() -> Image.Image:
    return smooth_image(96, 64)


@pytest.fixture(scope="session")
def stream(photo) -> bytes:
    import progcodec

    return progcodec.encode(photo, model="pyramid")
