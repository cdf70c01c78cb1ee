"""Columns of our outputs in Scipion's generic table viewer (double-click on an output).

pwem registers, per set class, the columns its metadata viewer shows
(:class:`pwem.viewers.viewers_data.RegistryViewerConfig`); for particles, movies
and micrographs that list leaves out every attribute it does not know, so the
quality-control columns were hidden until switched on by hand. Our columns are
appended to those lists (after Scipion's own); sets without them are unchanged.
"""

from pwem import objects as emobj
from pwem.viewers.showj import ORDER, RENDER, VISIBLE
from pwem.viewers.viewers_data import RegistryViewerConfig

#: Compare reprojections: image names ("<index>@<stack>") and the main scores.
PARTICLE_COLUMNS = ("_xmipp_image _xmipp_imageRef _xmipp_imageResidual _qc_outlierScore "
                    "_qc_isOutlier _qc_reason _qc_reasonValue _xmipp_cost _qc_zScoreGray "
                    "_xmipp_zScoreResCov _qc_zResMean _qc_zResStd _qc_angleChange "
                    "_qc_shiftChange _qc_angleSE _qc_anglePinned _qc_moveKept")
PARTICLE_IMAGES = "_xmipp_image _xmipp_imageRef _xmipp_imageResidual"
#: Movie alignment consensus: decision, reason and metrics of each movie/micrograph.
ALIGNMENT_COLUMNS = ("_alignment_reason _alignment_message _alignment_corr "
                     "_alignment_rmse_error _alignment_max_error _alignment_rmse_error_A "
                     "_alignment_scale _alignment_rotation _alignment_accum_total "
                     "_alignment_n_frames plotCart._filename")


def _append(setClass, columns, render=""):
    config = RegistryViewerConfig.getConfig(setClass)
    if not config or VISIBLE not in config:
        return  # every column is shown already
    new = [c for c in columns.split() if c not in config[VISIBLE].split()]
    if not new:
        return  # registered already (module imported twice)
    config = dict(config)
    for key in (VISIBLE, ORDER):
        if key in config:
            config[key] = f"{config[key].strip()} {' '.join(new)}"
    if render:
        config[RENDER] = f"{config.get(RENDER, '')} {render}".replace("no ", "").strip()
    RegistryViewerConfig.registerConfig(setClass, config)


def showQcColumns():
    """Register our columns with pwem's table viewer configuration (idempotent)."""
    _append(emobj.SetOfParticles, PARTICLE_COLUMNS, PARTICLE_IMAGES)
    _append(emobj.SetOfClasses2D, PARTICLE_COLUMNS, PARTICLE_IMAGES)
    _append(emobj.SetOfMovies, ALIGNMENT_COLUMNS, "plotCart._filename")
    _append(emobj.SetOfMicrographs, ALIGNMENT_COLUMNS, "plotCart._filename")
