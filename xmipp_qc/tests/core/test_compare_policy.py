"""The decisions shared by the compare-reprojections protocol and command line."""

import numpy as np
import pytest

from xmipp_qc.core.compare_policy import (
    DEFAULT_SIGMA,
    compare_options,
    exact_pixel,
    plan_chunks,
    working_grid,
)


def test_working_grid_coarsest_sampling_and_largest_physical_box():
    assert working_grid([(128, 1.5)], [1.5]) == (64, 3.0)  # downsampled to 3 Å/px
    assert working_grid([(128, 1.5)], [1.5], downsample=False) == (128, 1.5)
    assert working_grid([(64, 3.0)], [4.0], downsample=False) == (48, 4.0)  # the map's
    # two image groups: the 200 Å box (100 px at 2 Å) defines the box, at 3 Å/px
    box, px = working_grid([(64, 3.0), (100, 2.0)], [1.0])
    assert (box, px) == (66, 200.0 / 66)
    with pytest.raises(ValueError, match="no images"):
        working_grid([], [1.0])


def test_exact_pixel_of_a_group_on_the_grid():
    assert exact_pixel(128, 1.5, 3.0) == 3.0
    assert exact_pixel(100, 2.0, 3.0) == pytest.approx(200.0 / 67)  # 67 px after resizing


def test_resolution_gate_and_default_edge():
    o = compare_options(3.0, resolution_a=3.0, sigma=None)
    assert o.resolution_a is None  # not above 2 x 3 Å: no such detail on the grid
    assert o.sigma == DEFAULT_SIGMA == 3.0
    assert compare_options(3.0, resolution_a=6.0).resolution_a is None
    o = compare_options(3.0, resolution_a=6.5, sigma=2.0, symmetry="d2", use_ctf=True)
    assert (o.resolution_a, o.sigma, o.symmetry, o.use_ctf) == (6.5, 2.0, "d2", True)
    assert compare_options(1.0, resolution_a=0.0).resolution_a is None


def test_plan_chunks_groups_then_consecutive_rows():
    chunks = plan_chunks({}, 7, 3)
    assert [c.tolist() for c in chunks] == [[0, 1, 2], [3, 4, 5], [6]]
    volt = np.array([300, 200, 300, 300, 200, 300])
    chunks = plan_chunks({"voltage_kv": volt, "box": np.full(6, 64)}, 6, 2)
    assert [c.tolist() for c in chunks] == [[1, 4], [0, 2], [3, 5]]
    assert sorted(np.concatenate(chunks).tolist()) == list(range(6))
    assert plan_chunks({}, 0, 5) == []
    with pytest.raises(ValueError, match="chunk_size"):
        plan_chunks({}, 3, 0)
