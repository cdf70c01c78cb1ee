"""Viewers of xmipp_qc; Scipion discovers the classes re-exported here."""

from .viewer_movie_alignment_consensus import XmippQcConsensusMovieAlignmentViewer

__all__: list = ["XmippQcConsensusMovieAlignmentViewer"]
