"""The inputs of *compare reprojections*, as its steps see them.

:class:`CompareReprojectionsInputs` answers what the steps ask about the form's
inputs (which images, which candidate maps, their box and pixel sizes, whether the
images' own 3D assignment is used) and reads back the input files that
``convertStep`` saved (``input.npz``, ``locations.json``; see
:mod:`.compare_reprojections_results`).
"""

import json

import numpy as np
import pwem.objects as emobj


class CompareReprojectionsInputs:
    """Input accessors of :class:`.XmippQcProtCompareReprojections` (a mixin).

    It defines no form parameters and no steps; it only reads what the host
    protocol defines.

    Notes
    -----
    The host protocol provides:

    ``inputSet2D``
        Pointer param to a SetOfParticles, SetOfAverages or SetOfClasses2D.
    ``inputSet3D``
        Pointer param to a Volume, SetOfVolumes or SetOfClasses3D.
    ``useAssignment``
        Boolean param: reuse the images' 3D assignment when they have one.
    ``_getExtraPath(*names)``
        Scipion's path in the protocol's ``extra/`` folder.
    """

    def _imageSet(self):
        inSet = self.inputSet2D.get()
        return inSet.getImages() if isinstance(inSet, emobj.SetOfClasses2D) else inSet

    def _iterInputImages(self):
        inSet = self.inputSet2D.get()
        if isinstance(inSet, emobj.SetOfClasses2D):
            return (c.getRepresentative().clone() for c in inSet.iterItems()
                    if c.isEnabled() and c.hasRepresentative()
                    and _setId(c.getRepresentative(), c.getObjId()))
        return (img.clone() for img in inSet.iterItems() if img.isEnabled())

    def _input2DSize(self):
        return self.inputSet2D.get().getSize()

    def _input2DDims(self):
        inSet = self.inputSet2D.get()
        box = inSet.getDimensions()[0]
        return int(box), float(inSet.getSamplingRate())

    def _iterCandidates(self):
        """``(volumeId, Volume)`` for every candidate map, in id order."""
        inp = self.inputSet3D.get()
        if isinstance(inp, emobj.Volume):
            yield int(inp.getObjId() or 1), inp
        elif isinstance(inp, emobj.SetOfClasses3D):
            for cls in inp.iterItems():
                if cls.isEnabled() and cls.hasRepresentative():
                    rep = cls.getRepresentative().clone()
                    if not rep.getSamplingRate():
                        rep.setSamplingRate(cls.getSamplingRate() or inp.getSamplingRate())
                    yield int(cls.getObjId()), rep
        else:
            for vol in inp.iterItems():
                if vol.isEnabled():
                    vol = vol.clone()
                    if not vol.getSamplingRate():
                        vol.setSamplingRate(inp.getSamplingRate())
                    yield int(vol.getObjId()), vol

    def _input3DDims(self):
        _, vol = next(iter(self._iterCandidates()))
        return int(vol.getDim()[0]), float(vol.getSamplingRate())

    def _hasAssignment(self):
        inSet = self.inputSet2D.get()
        return (not isinstance(inSet, emobj.SetOfClasses2D)) and inSet.hasAlignmentProj()

    def _usesAssignment(self):
        return bool(self.useAssignment) and self._hasAssignment()

    def _needsMatching(self):
        return not self._usesAssignment()

    def _loadInput(self):
        return np.load(self._getExtraPath("input.npz"))

    def _loadLocations(self):
        with open(self._getExtraPath("locations.json")) as fh:
            return json.load(fh)

    def _validateShapes(self):
        errors = []
        imgSet = self._imageSet()  # a streaming input may have no image yet
        dims = imgSet.getDimensions() if imgSet is not None and imgSet.getSize() else None
        if dims and dims[0] != dims[1]:
            errors.append(f"The images must be square, got {dims[0]} x {dims[1]} px.")
        for vid, vol in self._iterCandidates():
            d = vol.getDim()
            if d and len(set(d)) != 1:
                errors.append(f"Map {vid} must be cubic, got {d}.")
        return errors

    def _validateMaps(self):
        """Every candidate map readable, finite and not constant (read once, at validation)."""
        from xmipp_qc.convert import readVolume
        from xmipp_qc.core.input_checks import map_problem

        errors = []
        for vid, vol in self._iterCandidates():
            try:
                problem = map_problem(readVolume(vol))
            except (OSError, ValueError) as err:
                problem = f"cannot be read ({err})"
            if problem:
                errors.append(f"Map {vid} ({vol.getFileName()}): {problem}.")
        return errors


def _setId(obj, objId):
    """Give ``obj`` the id ``objId``; True, so that it can sit in a filter condition."""
    obj.setObjId(objId)
    return True
