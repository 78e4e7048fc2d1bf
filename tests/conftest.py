"""Shared test tiers: pure tests run anywhere; ``root``/``lab`` tests need root.

Without root those tests are skipped, unless ``PODROUTES_REQUIRE_ROOT=1`` (set by
``scripts/test.sh``, and so in CI), in which case a missing privilege fails the test
instead of skipping it silently.
"""

from __future__ import annotations

import os

import pytest


@pytest.fixture(autouse=True)
def _privilege_tier(request: pytest.FixtureRequest) -> None:
    node = request.node
    if not (node.get_closest_marker("root") or node.get_closest_marker("lab")):
        return
    if os.geteuid() == 0:
        return
    if os.environ.get("PODROUTES_REQUIRE_ROOT") == "1":
        pytest.fail("this test needs root and PODROUTES_REQUIRE_ROOT=1 forbids skipping it")
    pytest.skip("needs root (network namespaces)")
