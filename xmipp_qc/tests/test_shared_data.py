"""The real-data guard: skip locally, fail under CI, never pass silently."""

import pytest

from xmipp_qc.tests.shared_data import missing_shared_data


def test_missing_data_skips_outside_ci(monkeypatch, tmp_path):
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match="real data not found"):
        missing_shared_data(tmp_path / "absent")


def test_missing_data_fails_under_ci(monkeypatch, tmp_path):
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="shared/ is expected"):
        missing_shared_data(tmp_path / "absent")
