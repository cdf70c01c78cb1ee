"""The finished movie-consensus project shared by the viewer tests (headless and GUI).

Six synthetic movies (agree, mirrored, agree, ...) aligned twice; the secondary
run lacks movie 6; the consensus uses an RMSE limit of 0.5 px. Call from a
``BaseTest.setUpClass`` after ``setupTestProject(cls)``: sets ``cls.ref``,
``cls.sec`` and ``cls.prot``.
"""

from xmipp_qc.protocols import XmippQcProtConsensusMovieAlignment, XmippQcProtSyntheticMovies
from xmipp_qc.protocols.protocol_synthetic_movies import RUN_SECONDARY


def launchFinishedConsensus(cls):
    """Launch the reference, secondary and consensus runs of ``cls`` and wait for them."""
    common = {"nMovies": 6, "kinds": "agree,mirrored,agree", "seed": 4, "nFrames": 12,
              "sharedStack": True}
    cls.ref = cls.newProtocol(XmippQcProtSyntheticMovies, **common)
    cls.ref.setObjLabel("reference run")
    cls.sec = cls.newProtocol(XmippQcProtSyntheticMovies, alignmentRun=RUN_SECONDARY,
                              dropMovies="6", **common)
    cls.sec.setObjLabel("secondary run")
    cls.launchProtocol(cls.ref)
    cls.launchProtocol(cls.sec)
    cls.prot = cls.newProtocol(XmippQcProtConsensusMovieAlignment,
                               inputMovies1=cls.ref.outputMovies,
                               inputMovies2=cls.sec.outputMovies, maxRmse=0.5)
    cls.launchProtocol(cls.prot)
