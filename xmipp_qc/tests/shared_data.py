"""Real data made by other projects' tools, in ``shared/data`` beside the checkout.

Tests that need it skip with the reason when it is absent; under CI (``CI`` set),
where it is always provided, its absence is a failure instead, so that the
convention checks cannot silently stop running.
"""

import os
from pathlib import Path

import pytest

SHARED_DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data"


def missing_shared_data(path):
    """Skip the calling test (fail it under CI) because ``path`` is absent."""
    message = f"real data not found at {path} (shared/ is expected beside the checkout)"
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)
