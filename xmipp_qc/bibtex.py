# **************************************************************************
# * xmipp_qc: quality control for cryo-EM, a Scipion plugin.
# * Licensed under the GNU General Public License v3 or later (see LICENSE).
# **************************************************************************
"""
@article{Cherian2013,
  title = {Jensen-Bregman LogDet Divergence with Application to Efficient
           Similarity Search for Covariance Matrices},
  author = {Cherian, Anoop and Sra, Suvrit and Banerjee, Arindam and
            Papanikolopoulos, Nikolaos},
  journal = {IEEE Transactions on Pattern Analysis and Machine Intelligence},
  volume = {35},
  number = {9},
  pages = {2161--2174},
  year = {2013},
  doi = {10.1109/TPAMI.2012.259}
}

@article{Sorzano2004,
  title = {XMIPP: a new generation of an open-source image processing package
           for electron microscopy},
  author = {Sorzano, C. O. S. and Marabini, R. and Vel{\'a}zquez-Muriel, J. and
            Bilbao-Castro, J. R. and Scheres, S. H. W. and Carazo, J. M. and
            Pascual-Montano, A.},
  journal = {Journal of Structural Biology},
  volume = {148},
  number = {2},
  pages = {194--204},
  year = {2004},
  doi = {10.1016/j.jsb.2004.06.006}
}

@article{delaRosaTrevin2013,
  title = {Xmipp 3.0: an improved software suite for image processing in electron
           microscopy},
  author = {de la Rosa-Trev{\'i}n, J. M. and Ot{\'o}n, J. and Marabini, R. and
            Zald{\'i}var, A. and Vargas, J. and Carazo, J. M. and Sorzano, C. O. S.},
  journal = {Journal of Structural Biology},
  volume = {184},
  number = {2},
  pages = {321--328},
  year = {2013},
  doi = {10.1016/j.jsb.2013.09.015}
}

@article{Wang2005,
  title = {On the Euclidean distance of images},
  author = {Wang, Liwei and Zhang, Yan and Feng, Jufu},
  journal = {IEEE Transactions on Pattern Analysis and Machine Intelligence},
  volume = {27},
  number = {8},
  pages = {1334--1339},
  year = {2005},
  doi = {10.1109/TPAMI.2005.165}
}

@article{Kabsch1976,
  title = {A solution for the best rotation to relate two sets of vectors},
  author = {Kabsch, Wolfgang},
  journal = {Acta Crystallographica Section A},
  volume = {32},
  number = {5},
  pages = {922--923},
  year = {1976},
  doi = {10.1107/S0567739476001873}
}
"""
