"""The form of *compare reprojections*: its Input and Ranking sections.

Xmipp's parameter names (``inputSet2D``, ``useAssignment``, ``ignoreCTF``,
``resol``, ...) with help texts for users, units in the labels. The burn-in and
session sections belong to the streaming and session collaborators, the
parallel section to the protocol.
"""

import pyworkflow.protocol.constants as pwcts
import pyworkflow.protocol.params as params

from xmipp_qc.core import compare_policy
from xmipp_qc.core.saved_images import OUTPUT_STACKS
from xmipp_qc.core.symmetry import VALID_SYMMETRY_FORMS
from xmipp_qc.protocols.compare_reprojections_outputs import EXTRACT_BOTH

__all__ = ["defineCompareParams"]


def defineCompareParams(form):
    """Add the Input and Ranking sections of compare reprojections to ``form``."""
    form.addSection(label="Input")
    form.addParam("inputSet2D", params.PointerParam, important=True,
                  pointerClass="SetOfParticles, SetOfAverages, SetOfClasses2D",
                  label="Images", help="Particles (with or without 3D assignment and "
                                       "CTF), averages, or 2D classes (representatives).")
    form.addParam("inputSet3D", params.PointerParam, important=True,
                  pointerClass="Volume, SetOfVolumes, SetOfClasses3D",
                  label="Map(s)", help="Each map (or 3D class) is compared separately.")
    form.addParam("useAssignment", params.BooleanParam, default=True,
                  label="Use the input angular assignment",
                  help="Use the particles' 3D alignment; otherwise (or without one) "
                       "angles are found by projection matching, which searches "
                       "shifts up to 20% of the box (picks are often that far "
                       "off-centre).")
    form.addParam("optimizeGray", params.BooleanParam, default=False,
                  label="Optimize gray", help="Store the gray-fitted reprojection a*P+b. "
                                              "Scores always use the fitted gray model.")
    form.addParam("ignoreCTF", params.BooleanParam, default=False, label="Ignore CTF",
                  help="No (default): whenever the images carry a CTF, each image's CTF "
                       "is applied to its reprojection in matching, refinement and "
                       "scoring (without it scores are lower: on real β-gal particles "
                       "the median cost drops from 0.29 to 0.22). The run log and the "
                       "summary say whether it was applied and why.")
    form.addParam("doDownSample", params.BooleanParam, default=True,
                  label="Downsample to 3 Å/px", help="Fourier cropping to at least "
                                                     "3 Å/px (faster, same scores).")
    form.addParam("doEvaluateResiduals", params.BooleanParam, default=False,
                  expertLevel=pwcts.LEVEL_ADVANCED, label="Save residual images",
                  help="Also save residual and residual-covariance images. Residual "
                       "statistics and outlier scores are always computed.")
    form.addParam("outputStacks", params.EnumParam, default=0,
                  choices=list(OUTPUT_STACKS), display=params.EnumParam.DISPLAY_HLIST,
                  label="Save images of",
                  help="Which images keep their aligned image and reprojection (and "
                       "residual) on disk, for the viewer's thumbnails and the table: "
                       "all (default): 4 x B^2 bytes per image and stack at the working "
                       "box B (37 KB at B = 96; 7.4 GB per 100,000 images for the two "
                       "stacks, 11 GB with residuals); flagged: only the flagged images "
                       "and the worst of each score the viewer sorts by (a few % of "
                       "that); none: no image stack. The scores are the same. A "
                       "streaming run saves all.")
    form.addParam("keepWorst", params.IntParam, default=50, condition="outputStacks == 1",
                  expertLevel=pwcts.LEVEL_ADVANCED, label="Worst images per score",
                  validators=[params.Positive],
                  help="With 'flagged': the images saved besides the flagged ones, for "
                       "each of outlier score, cost, covariance z-score, gray z-score "
                       "and IMED.")
    form.addParam("symmetryGroup", params.StringParam, default="c1",
                  label="Symmetry group",
                  help=f"Point group of the maps, Xmipp names: {VALID_SYMMETRY_FORMS}.")
    form.addParam("angularSampling", params.FloatParam, default=5.0,
                  expertLevel=pwcts.LEVEL_ADVANCED, label="Angular sampling (°)",
                  validators=[params.Positive], help="Gallery step of projection matching.")
    form.addParam("resol", params.FloatParam, default=3.0,
                  label="Comparison resolution (Å)",
                  help="Low-pass of the comparison and refinement; 0 = none. No effect "
                       "below twice the working pixel size.")
    form.addParam("sigma", params.FloatParam, default=compare_policy.DEFAULT_SIGMA,
                  expertLevel=pwcts.LEVEL_ADVANCED, label="Low-pass edge (Fourier px)",
                  help="Width of the raised-cosine edge of that low-pass, in Fourier "
                       "pixels (1/box cycles/px).")
    form.addParam("chunkSize", params.IntParam, default=256, validators=[params.Positive],
                  expertLevel=pwcts.LEVEL_ADVANCED, label="Images per chunk",
                  help="Images processed together by one thread (or, with the queue "
                       "used per step, by one queue job); memory grows with it.")
    form.addSection(label="Ranking")
    form.addParam("doRanking", params.BooleanParam, default=True,
                  label="Rank the maps", help="Needs a set of maps or 3D classes.")
    form.addParam("doExtraction", params.BooleanParam, default=True, condition="doRanking",
                  label="Extract the best", help="Output the best map and/or its particles.")
    form.addParam("extractOption", params.EnumParam, default=EXTRACT_BOTH,
                  condition="doRanking and doExtraction",
                  choices=["Particles", "Volume", "Both"], label="Extract",
                  help="Particles need 3D classes as input.")
