"""examples/custom_plugin installs as a separate package and registers through the entry point."""
import subprocess
import sys
from pathlib import Path

import pytest

from progcodec import registry, testing

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "custom_plugin"


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    target = tmp_path_factory.mktemp("site")
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation",
                    "--target", str(target), str(EXAMPLE)], check=True)
    sys.path.insert(0, str(target))
    yield target
    sys.path.remove(str(target))
    registry.unregister("klt")


def test_entry_point_is_discovered(installed):
    assert "klt" in registry.names()
    info = {p.name: p for p in registry.plugins()}["klt"]
    assert info.error is None and info.source == "progcodec_klt:KLTCodec"


def test_example_plugin_passes_the_conformance_kit(installed):
    testing.check_plugin("klt", max_examples=3)
