"""Our projector and CTF reproduce RELION's own output (real files made by
``relion_project``, in /work/shared/data; see its README.md).

Conventions established here (the compare-reprojections CLI relies on them):

* Euler angles: RELION's ``rlnAngleRot/Tilt/Psi`` are Xmipp's ``(rot, tilt, psi)``
  unchanged (same ZYZ matrix, same ``P = integral of V(E.T r) dz``).
* Origins: the Xmipp shift of a RELION particle is ``s = +rlnOrigin`` in px,
  i.e. ``shift_x = rlnOriginX`` (or ``rlnOriginXAngst / pixel size``), same for
  y. RELION's image with origin ``o`` is the centred projection translated by
  ``-o``: ``I(r) = P(r + o)``, exactly our model ``I(r) = P(r + s)``. The
  opposite sign drops the NCC to ~0.
* Odd boxes: ``relion_project`` output for an odd box is translated by +1 px in
  x and y relative to an origin-at-N//2 projector (ASPIRE documents the same),
  i.e. it matches our projection with ``s = rlnOrigin - (1, 1)``. This is a
  property of RELION's projector output, not of particle origins.
* CTF: RELION's ``+sin(pi lam df k^2 - pi/2 Cs lam^3 k^4 + asin Q0)`` with the
  STAR's ``rlnDefocusU/V`` (Å) and ``rlnDefocusAngle`` (degrees) used as is in
  :func:`xmipp_qc.core.ctf.ctf_image` (azimuth from +x towards +y of the
  ``[y, x]`` array, ``+angle``). The negated angle or swapped U/V are worse on
  every check below, and RELION's padding-3 output agrees with the exact answer
  to NCC 0.999 while its padding-1 output (trilinear, no oversampling) is only
  accurate to ~0.99, so the sign tests use padding 3.
"""

from __future__ import annotations

from pathlib import Path

import emtable
import mrcfile
import numpy as np
import pytest

from xmipp_qc.core.ctf import ctf_image
from xmipp_qc.core.projection import FourierProjector
from xmipp_qc.tests.shared_data import SHARED_DATA, missing_shared_data

DATA = SHARED_DATA
RIBO = DATA / "relion-projections-70S"
POINT = DATA / "relion-ctf-pointmass"



def ncc(a, b):
    a = a - a.mean()
    b = b - b.mean()
    return float((a * b).sum() / np.sqrt((a * a).sum() * (b * b).sum()))


def _need(path: Path) -> Path:
    if not path.exists():
        missing_shared_data(path)
    return path


def _particles(star: Path):
    table = emtable.Table(fileName=str(_need(star)), tableName="particles")
    rows = list(table)
    angles = np.array([[r.rlnAngleRot, r.rlnAngleTilt, r.rlnAnglePsi] for r in rows])
    return rows, angles


def _origins_px(rows, pixel_size_a: float) -> np.ndarray:
    """rlnOriginX/Y in px if present, else rlnOriginX/YAngst / pixel size."""
    if hasattr(rows[0], "rlnOriginX"):
        return np.array([[r.rlnOriginX, r.rlnOriginY] for r in rows], dtype=float)
    return np.array([[r.rlnOriginXAngst, r.rlnOriginYAngst] for r in rows]) / pixel_size_a


@pytest.fixture(scope="module")
def ribosome():
    vol = mrcfile.read(_need(RIBO / "clean70SRibosome_vol_65p.mrc")).astype(np.float64)
    return FourierProjector(vol, pad=2, interpolation="cubic", dtype=np.float64)


ODD_BOX_OFFSET = np.array([1.0, 1.0])  # relion_project output, odd N, px (x, y)


@pytest.mark.parametrize("name", ["rln_proj_65", "rln_proj_65_centered", "rln_proj_65_shifted"])
def test_ribosome_projections_match_relion(ribosome, name):
    rows, angles = _particles(RIBO / f"{name}.star")
    images = mrcfile.read(_need(RIBO / f"{name}.mrcs")).astype(np.float64)
    assert images.shape == (len(rows), 65, 65)
    origin = _origins_px(rows, 1.0)
    ours = ribosome.project(angles, shifts=origin - ODD_BOX_OFFSET)
    scores = [ncc(a, b) for a, b in zip(ours, images)]
    assert min(scores) >= 0.999, scores
    # without the odd-box offset the match is clearly worse
    plain = ribosome.project(angles, shifts=origin)
    assert max(ncc(a, b) for a, b in zip(plain, images)) < 0.95


def test_ribosome_origin_sign(ribosome):
    """s = +rlnOrigin; -rlnOrigin fails (images with non-zero integer origins)."""
    rows, angles = _particles(RIBO / "rln_proj_65_shifted.star")
    images = mrcfile.read(_need(RIBO / "rln_proj_65_shifted.mrcs")).astype(np.float64)
    origin = _origins_px(rows, 1.0)
    assert np.all(np.abs(origin).max(axis=1) >= 5)  # the test has teeth
    wrong = ribosome.project(angles, shifts=-origin - ODD_BOX_OFFSET)
    assert max(ncc(a, b) for a, b in zip(wrong, images)) < 0.5
    # RELION's shifted images are its centred images translated by -origin
    centred = mrcfile.read(_need(RIBO / "rln_proj_65_centered.mrcs")).astype(np.float64)
    for img, ref, (ox, oy) in zip(images, centred, origin.astype(int)):
        np.testing.assert_allclose(
            img, np.roll(ref, (-oy, -ox), axis=(0, 1)), atol=1e-3 * ref.max()
        )


@pytest.fixture(scope="module")
def pointmass():
    vol = mrcfile.read(_need(POINT / "pointmass.mrc")).astype(np.float64)
    assert vol.shape == (64, 64, 64) and vol.sum() == 1.0
    optics = next(iter(emtable.Table(fileName=str(POINT / "pyem.star"), tableName="optics")))
    return vol, optics


def _pointmass_case(pointmass, suffix, angle_sign=1.0, swap_uv=False):
    vol, optics = pointmass
    rows, angles = _particles(POINT / f"relion_proj_batch{suffix}.star")
    images = mrcfile.read(_need(POINT / f"relion_proj_batch{suffix}.mrcs")).astype(np.float64)
    apix = optics.rlnImagePixelSize
    du = np.array([r.rlnDefocusU for r in rows])
    dv = np.array([r.rlnDefocusV for r in rows])
    if swap_uv:
        du, dv = dv, du
    ctf = ctf_image(
        64,
        apix,
        du,
        dv,
        angle_sign * np.array([r.rlnDefocusAngle for r in rows]),
        voltage_kv=optics.rlnVoltage,
        cs_mm=optics.rlnSphericalAberration,
        amplitude_contrast=optics.rlnAmplitudeContrast,
        phase_shift_deg=np.array([r.rlnPhaseShift for r in rows]),
    )
    # RELION's projector keeps frequencies inside the Nyquist circle only
    fp = FourierProjector(vol, pad=2, interpolation="cubic", max_freq=0.5, dtype=np.float64)
    ours = fp.project(angles, shifts=_origins_px(rows, apix), ctf=ctf)
    return np.array([ncc(a, b) for a, b in zip(ours, images)])


@pytest.mark.parametrize("suffix, worst", [("_pfac3", 0.998), ("_pfac2", 0.997), ("", 0.985)])
def test_pointmass_ctf_projections_match_relion(pointmass, suffix, worst):
    scores = _pointmass_case(pointmass, suffix)
    assert scores.size == 24
    assert scores.min() >= worst
    if suffix == "_pfac3":
        assert scores.mean() >= 0.999


def test_pointmass_ctf_sign_angle_and_axes(pointmass):
    good = _pointmass_case(pointmass, "_pfac3")
    flipped_angle = _pointmass_case(pointmass, "_pfac3", angle_sign=-1.0)
    swapped = _pointmass_case(pointmass, "_pfac3", swap_uv=True)
    for other in (flipped_angle, swapped):
        assert other.mean() < good.mean() - 0.004
        assert np.mean(good > other) >= 0.8
    # CTF sign: NCC is odd in the CTF, so -CTF would give NCC < -0.99 on every image
    assert np.all(good > 0.99)
