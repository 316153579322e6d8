"""QRes-VAE's training objective measures what the range coder spends."""
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file

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


@pytest.mark.parametrize("quant", ["hard", "mixed"])
def test_training_rate_is_the_coded_rate(model, photo, quant):
    """quant='hard' (and 'mixed') bits per block are what each layer's payload costs: never
    less (the coder is within 1% + a few bytes of ideal), and more only where a residual is so
    unlikely under the prior that the coder escapes it for fewer bits than its clamped cost."""
    data = progcodec.encode(photo, model="qres-vae", rate="low")
    sizes = np.array(progcodec.info(data).layer_sizes) * 8
    with torch.no_grad():
        _, trained = model.net(to_tensor(photo), quant=quant)
        _, noisy = model.net(to_tensor(photo), quant="noise")
    trained = np.array([b.item() for b in trained])
    assert np.all(sizes <= 1.01 * trained + 48), (sizes, trained.round())
    assert sizes.sum() >= 0.8 * trained.sum(), (sizes, trained.round())
    assert sum(b.item() for b in noisy) > 1.2 * sizes.sum()


@pytest.mark.parametrize("quant", ["hard", "mixed"])
def test_training_reconstruction_is_the_decoded_image(model, photo, quant):
    with torch.no_grad():
        x_hat, _ = model.net(to_tensor(photo), quant=quant)
    decoded = progcodec.decode(progcodec.encode(photo, model="qres-vae", rate="low")).tensor
    assert torch.allclose(x_hat.clamp(0, 1), decoded, atol=2 / 255)


def test_unknown_quantization_is_refused(model, photo):
    with pytest.raises(ValueError, match="quant"):
        model.net(to_tensor(photo), quant="gumbel")


def test_training_fine_tunes_resumes_and_records_its_phases(tmp_path, photo):
    """Two runs of the training script: the first fine-tunes shipped weights, the second
    resumes its checkpoint; the export loads into the plugin and lists every phase."""
    pytest.importorskip("tqdm")
    from progcodec_plugins.qres_vae import plugin, train

    (tmp_path / "photos").mkdir()
    Image.open(DATA / "photo_128.png").save(tmp_path / "photos" / "a.png")
    args = ["--rate", "low", "--lmbda", "280", "--minutes", "0.01", "--batch", "1", "--crop", "64",
            "--quant", "mixed", "--data", str(tmp_path / "photos"), "--runs", str(tmp_path / "runs"),
            "--weights", str(tmp_path / "w"), "--init", str(plugin.WEIGHTS / "low.safetensors")]
    train.main(args)
    first = json.loads((tmp_path / "w" / "low.json").read_text())
    train.main(args)  # resumes: the budget is spent, so it only re-exports
    meta = json.loads((tmp_path / "w" / "low.json").read_text())
    shipped = json.loads((plugin.WEIGHTS / "low.json").read_text()).get("phases", [])
    assert meta["phases"][:-1] == shipped and meta["phases"][-1]["quant"] == "mixed"
    assert meta["steps"] == first["steps"] >= 1
    state = load_file(str(tmp_path / "w" / "low.safetensors"))
    plugin.Network(plugin.Config()).load_state_dict({k: v.float() for k, v in state.items()})
