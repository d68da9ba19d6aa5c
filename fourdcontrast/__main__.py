"""``python -m fourdcontrast ...`` (and ``torchrun -m fourdcontrast pretrain ...``): the command line."""

import sys

from fourdcontrast.cli import main

sys.exit(main())
