"""Seeded synthetic data: phantom maps, projection images, movie trajectories.

The generators live in one module per kind and are re-exported here:
blob maps and their exact projections in :mod:`xmipp_qc.core.simulate_blobs`,
particle sets with planted outliers (and random orientations) in
:mod:`xmipp_qc.core.simulate_particles`, trajectories in
:mod:`xmipp_qc.core.simulate_motion`.

Used by the demo, the tests and the benchmarks, so every generator takes a
``seed`` (or a :class:`numpy.random.Generator`) and is deterministic. Conventions
(axes, origin, Euler angles, shift sign) are those of :mod:`xmipp_qc.core`.
"""

from __future__ import annotations

from xmipp_qc.core.simulate_blobs import (
    Blobs,
    blobs_volume,
    phantom_blobs,
    phantom_volume,
    project_blobs,
)
from xmipp_qc.core.simulate_motion import (  # noqa: F401  (SeedLike, rng_from: as before)
    SENTINEL,
    TRAJECTORY_KINDS,
    SeedLike,
    TrajectoryPair,
    rng_from,
    simulate_trajectory,
    simulate_trajectory_pair,
)
from xmipp_qc.core.simulate_particles import (
    OUTLIER_KINDS,
    ParticleSet,
    perturb_angles,
    random_angles,
    simulate_particles,
)

__all__ = [
    "OUTLIER_KINDS",
    "SENTINEL",
    "TRAJECTORY_KINDS",
    "TrajectoryPair",
    "Blobs",
    "ParticleSet",
    "blobs_volume",
    "perturb_angles",
    "phantom_blobs",
    "phantom_volume",
    "project_blobs",
    "random_angles",
    "simulate_particles",
    "simulate_trajectory",
    "simulate_trajectory_pair",
]
