"""Protocols of xmipp_qc; Scipion discovers the classes re-exported here."""

from .protocol_compare_reprojections import XmippQcProtCompareReprojections
from .protocol_movie_alignment_consensus import XmippQcProtConsensusMovieAlignment
from .protocol_synthetic_movies import XmippQcProtSyntheticMovies
from .protocol_synthetic_particles import XmippQcProtSyntheticParticles

__all__: list = ["XmippQcProtCompareReprojections", "XmippQcProtConsensusMovieAlignment",
                 "XmippQcProtSyntheticMovies", "XmippQcProtSyntheticParticles"]
