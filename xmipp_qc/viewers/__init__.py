"""Viewers of xmipp_qc; Scipion discovers the classes re-exported here."""

from .table_config import showQcColumns
from .viewer_compare_reprojections import XmippQcCompareReprojectionsViewer
from .viewer_movie_alignment_consensus import XmippQcConsensusMovieAlignmentViewer

showQcColumns()

__all__: list = ["XmippQcCompareReprojectionsViewer", "XmippQcConsensusMovieAlignmentViewer"]
