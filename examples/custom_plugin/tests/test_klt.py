"""A plugin's whole test suite can be this one call."""
from progcodec.testing import check_plugin


def test_klt_conforms():
    check_plugin("klt")
