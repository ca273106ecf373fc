"""``python -m distglm.cli``: the ``distglm`` command."""

import sys

from .main import main

sys.exit(main())
