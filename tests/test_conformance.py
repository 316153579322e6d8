"""Every installed plugin passes the conformance kit that plugin authors run."""
import pytest

from progcodec import PriorMismatchError, registry, testing

PLUGINS = [p.name for p in registry.plugins()]


@pytest.mark.parametrize("name", PLUGINS)
def test_plugin_conforms(name):
    testing.check_plugin(name)


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
