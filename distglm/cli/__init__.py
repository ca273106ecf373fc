"""The ``distglm`` command: batch jobs over stores of sessions (``fit``, ``predict``,
``score``, ``info``) and a ``demo``.

The data generators the demo, the tests and the benchmarks use are here too
(:func:`make_population`, :func:`make_ill_conditioned`, :func:`make_sessions`).
"""

from .generate import make_ill_conditioned, make_population, make_sessions
from .main import build_parser, main

__all__ = ["build_parser", "main", "make_ill_conditioned", "make_population", "make_sessions"]
