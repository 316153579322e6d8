"""Every installed plugin passes the conformance kit that plugin authors run.

The default run keeps images small (about one stride block beyond the plugin's stride),
draws 2 hypothesis examples per check and cuts the stream at 3 layer boundaries (first,
middle, last) on the default rate point, and the deterministic checks (round trip, pure
prior, two cuts) on the other rate points: seconds per plugin. (The kit's own default cuts at
every boundary, O(layers²) decodes: most of the 12-layer qres-vae check's time.)
``PROGCODEC_EXHAUSTIVE=1`` runs the kit as plugin authors do and more (the kit's default
image sizes, ``PROGCODEC_EXHAUSTIVE_EXAMPLES`` examples per check, default 25).
"""
import os

import pytest

from progcodec import PriorMismatchError, registry, testing

PLUGINS = [p.name for p in registry.plugins()]
EXHAUSTIVE = os.environ.get("PROGCODEC_EXHAUSTIVE", "") not in ("", "0")


def kit_options(name: str) -> dict:
    if EXHAUSTIVE:
        return dict(max_examples=int(os.environ.get("PROGCODEC_EXHAUSTIVE_EXAMPLES", "25")))
    stride = registry.get_class(name).stride
    return dict(max_examples=2, max_side=max(stride, 24), max_cuts=3)


@pytest.mark.parametrize("name", PLUGINS)
def test_plugin_conforms(name):
    if EXHAUSTIVE:
        testing.check_plugin(name, **kit_options(name))
        return
    # the whole kit on the default rate point; on the others the deterministic checks
    cls = registry.get_class(name)
    opts = kit_options(name)
    testing.check_plugin(name, rates=[cls.default_rate], **opts)
    side = opts["max_side"]
    for rate in cls.rates:
        if rate != cls.default_rate:
            data = testing.check_roundtrip(name, rate, testing.sample_image(side + 3, side - 5, channels=cls.channels))
            testing.check_prior_is_pure(name, rate, data)
            testing.check_prefixes(data, max_cuts=2)


def test_kit_catches_an_impure_prior():
    from progcodec_plugins.pyramid import Pyramid

    class Impure(Pyramid):
        name = "impure"
        calls = [0]

        def decoder(self, height, width, side):
            state = super().decoder(height, width, side)
            prior = state.prior

            def drifting(k):
                Impure.calls[0] += 1
                params = prior(k)
                params[0] = type(params[0])(params[0].scales * (1 + Impure.calls[0] % 2))
                return params
            state.prior = drifting
            return state

    registry.register(Impure)
    try:
        with pytest.raises((AssertionError, PriorMismatchError)):
            testing.check_plugin("impure", max_examples=2)
    finally:
        registry.unregister("impure")
