"""``python -m bertlstm``, and so ``torchrun -m bertlstm`` and ``accelerate launch -m bertlstm``."""

import sys

from .cli import main

sys.exit(main())
