"""The tasks: one folder each (``classify``, ``tag``), every one built on :mod:`bertlstm.core` alone, and
:mod:`bertlstm.tasks.registry`, the one place that lists them."""
