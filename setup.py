"""Installs ``progcodec`` and the bundled plugins in ``plugins/`` as ``progcodec_plugins``."""
from setuptools import find_packages, setup

plugin_packages = ["progcodec_plugins"] + [f"progcodec_plugins.{p}" for p in find_packages("plugins")]
setup(
    packages=find_packages(include=["progcodec", "progcodec.*"]) + plugin_packages,
    package_dir={"progcodec_plugins": "plugins"},
)
