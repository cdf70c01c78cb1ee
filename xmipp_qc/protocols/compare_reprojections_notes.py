"""The first lines of a *compare reprojections* run: is the CTF applied and why, and the
pixel sizes of maps and images when they differ.

:class:`RunNotes` is a collaborator of :class:`.XmippQcProtCompareReprojections`
(not a mixin): at the first step it decides whether the CTF is applied
(:func:`xmipp_qc.core.run_notes.ctf_choice`, the command line's rule: whenever
the images carry one, unless *Ignore CTF*), words the pixel-size lines
(:func:`xmipp_qc.core.run_notes.pixel_size_notes`), writes them to the run log
and saves them in ``extra/run_notes.json``, which later steps (chunk inputs,
streaming chunks) and the summary read.
"""

import json
import os

from xmipp_qc.core.run_notes import ctf_choice, pixel_size_notes
from xmipp_qc.formats.json_files import write_json

NOTES_FILE = "run_notes.json"
CTF_SOURCE = "CTF model on the images"
CTF_OFF = "Ignore CTF = Yes"
PIXEL_HINT = ("check the map's sampling rate where it was imported (Import volumes: "
              "Sampling rate)")


class RunNotes:
    """Decide and say, once per run, what changes every score (see the module doc)."""

    def __init__(self, protocol):
        self.protocol = protocol

    def _path(self):
        return self.protocol._getExtraPath(NOTES_FILE)

    def decide(self, imagesHaveCtf, workPixel):
        """Decide the CTF; log and save the run's first lines. Returns whether it is applied."""
        prot = self.protocol
        ctf = ctf_choice(not prot.ignoreCTF.get(), bool(imagesHaveCtf), source=CTF_SOURCE,
                         switch_off=CTF_OFF)
        _, pixel = prot._input2DDims()
        maps = [(f"{vid} ({os.path.basename(vol.getFileName() or '')})",
                 float(vol.getSamplingRate()), "its sampling rate in Scipion")
                for vid, vol in prot._iterCandidates()]
        pixels = pixel_size_notes([(pixel, "sampling rate of the images")], maps,
                                  float(workPixel), hint=PIXEL_HINT)
        prot.info(ctf.note)
        for line in pixels:
            prot.warning(line)
        write_json(self._path(), {"ctf_applied": ctf.applied, "lines": [ctf.note, *pixels]})
        return ctf.applied

    def _read(self):
        if not os.path.exists(self._path()):
            return None
        with open(self._path()) as fh:
            return json.load(fh)

    def ctfApplied(self):
        """The decision saved by :meth:`decide` (False before it)."""
        notes = self._read()
        return bool(notes and notes["ctf_applied"])

    def lines(self):
        """The saved first lines, for the summary ([] before the first step)."""
        notes = self._read()
        return list(notes["lines"]) if notes else []
