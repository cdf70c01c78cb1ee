"""Protocols of xmipp_qc; Scipion discovers the classes re-exported here."""

from .protocol_movie_alignment_consensus import XmippQcProtConsensusMovieAlignment
from .protocol_synthetic_movies import XmippQcProtSyntheticMovies
from .protocol_synthetic_particles import XmippQcProtSyntheticParticles

__all__: list = ["XmippQcProtConsensusMovieAlignment", "XmippQcProtSyntheticMovies",
                   "XmippQcProtSyntheticParticles"]
