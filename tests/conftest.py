import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch loads: idle OpenMP threads sleep, not spin

import numpy as np
import pytest
from hypothesis import HealthCheck, settings
from PIL import Image

# the fitted-per-image codec: few fitting iterations wherever a test encodes with it (the
# pipeline is the same; tests/test_overfit.py checks what the iteration count changes)
os.environ.setdefault("PROGCODEC_OVERFIT_ITERS", "20")

if not os.environ.get("PROGCODEC_THREADS"):
    # one torch thread for the whole run (progcodec/threads.py): on a shared machine more only spin
    import progcodec

    progcodec.set_threads(1)

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


@pytest.fixture(scope="session", autouse=True)
def official_qres_weights(tmp_path_factory):
    """A private weights folder holding the exactness fixtures of the official QRes-VAE layouts
    (tests/data/qres_official_*.safetensors, ch 4) as rate point ``fixture`` of ``qres34m`` and
    ``qres17m``: every plugin test then runs them, and no user-imported checkpoint is touched."""
    from pathlib import Path

    from safetensors.torch import load_file

    from progcodec_plugins.qres_vae import official

    folder = tmp_path_factory.mktemp("weights")
    before = os.environ.get("PROGCODEC_WEIGHTS")
    os.environ["PROGCODEC_WEIGHTS"] = str(folder)
    data = Path(__file__).parent / "data"
    for arch in official.ARCHS:
        tensors = load_file(str(data / f"qres_official_{arch}.safetensors"))
        state = {k[len("state."):]: v for k, v in tensors.items() if k.startswith("state.")}
        official.import_weights(state, name=arch, rate="fixture", ch=4, dest=folder)
    yield folder
    if before is None:
        os.environ.pop("PROGCODEC_WEIGHTS", None)
    else:
        os.environ["PROGCODEC_WEIGHTS"] = before


@pytest.fixture(scope="session")
def photo() -> Image.Image:
    return smooth_image(96, 64)


@pytest.fixture(scope="session")
def stream(photo) -> bytes:
    import progcodec

    return progcodec.encode(photo, model="pyramid")
