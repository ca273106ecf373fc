"""distglm: population classifier GLMs (softmax, many outputs, one design matrix).

The public surface is this module: the estimators, :func:`open_sessions` for multi-session
Zarr/xarray data, :func:`open_data` for a data session that several fits reuse, the
regularizers and the exceptions.
"""

import logging

from . import exceptions, regularizer
from .cv import ClassifierGLMCV, ClassifierPopulationGLMCV
from .data import Sessions, open_sessions
from .distribute import WORKER_PRELOAD, DataSession, open_data, pin_workers_to_cores
from .encoding import LabelEncoder
from .estimator import ClassifierGLM, ClassifierPopulationGLM
from .exceptions import FitTooLargeError, WorkerLost, WorkerMemoryError
from .path import regularization_path
from .persist import load_model

__version__ = "0.1.0"

# the library logs on module loggers under "distglm"; applications choose where it goes
logging.getLogger("distglm").addHandler(logging.NullHandler())

__all__ = [
    "WORKER_PRELOAD",
    "ClassifierGLM",
    "ClassifierGLMCV",
    "ClassifierPopulationGLM",
    "ClassifierPopulationGLMCV",
    "DataSession",
    "FitTooLargeError",
    "LabelEncoder",
    "Sessions",
    "WorkerLost",
    "WorkerMemoryError",
    "__version__",
    "exceptions",
    "load_model",
    "open_data",
    "open_sessions",
    "pin_workers_to_cores",
    "regularization_path",
    "regularizer",
]
