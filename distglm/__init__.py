"""distglm: population classifier GLMs (softmax, many outputs, one design matrix).

The public surface is this module: the estimators, the regularizers and the exceptions.
"""

from . import exceptions, regularizer
from .encoding import LabelEncoder
from .estimator import ClassifierGLM, ClassifierPopulationGLM

__version__ = "0.1.0"

__all__ = [
    "ClassifierGLM",
    "ClassifierPopulationGLM",
    "LabelEncoder",
    "__version__",
    "exceptions",
    "regularizer",
]
