"""``python -m bertlstm``, and so ``torchrun -m bertlstm`` and ``accelerate launch -m bertlstm``."""

from .cli import run

run()
