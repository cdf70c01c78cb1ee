"""Numeric engine of xmipp_qc: numpy and scipy only, never pyworkflow or pwem.

Conventions shared by every module (each one is pinned by a test):

Arrays
    Images are ``(N, N)`` or stacks ``(n, N, N)`` indexed ``[y, x]``; volumes are
    ``(N, N, N)`` indexed ``[z, y, x]``. The origin of a box of size N is the
    pixel ``N // 2`` along every axis (Xmipp and RELION), for odd and even N.
    Physical coordinates of pixel ``[i, j]`` are ``x = j - N//2``, ``y = i - N//2``.
Units
    Shifts and lengths in pixels (px) unless a name ends in ``_a`` (Angstrom);
    angles in degrees; spatial frequencies in cycles/px unless stated.
Euler angles
    Xmipp ZYZ ``(rot, tilt, psi)``. The matrix is
    ``E = Rz(psi) @ Ry(tilt) @ Rz(rot)`` with Xmipp's sign choice, i.e.
    ``scipy.spatial.transform.Rotation.from_euler("ZYZ", [rot, tilt, psi],
    degrees=True).as_matrix().T``. The projection of a volume V is
    ``P(x, y) = integral of V(E.T @ [x, y, z]) dz``; the projection direction is
    the third row of E.
Shifts
    ``(shift_x, shift_y)`` is Xmipp's ``shiftX, shiftY``: the translation that,
    applied to the experimental image, brings it into register with the centred
    reprojection, ``I_aligned(r) = I(r - s)``. Hence the model of an image with
    shift ``s`` is the reprojection translated by ``-s``:
    ``I(r) = P(r + s)``.
"""
