"""One module per ``bench`` subcommand, each with its arguments beside its action.

A module here defines ``add_parser(sub)``: it adds its subcommand (and any sub-subcommands) to the
``argparse`` sub-parsers ``sub`` and sets ``func`` to the action, a function of the parsed arguments that
returns the exit status. :mod:`bench.cli` builds the parser from :data:`COMMANDS`, in this order (the order
``bench --help`` lists them). The modules import nothing heavy at import time: ``bench --help`` and
``bench list`` must not import torch or Ray.
"""

from __future__ import annotations

#: The subcommand modules (``bench.commands.<name>``), in the order ``bench --help`` lists them.
COMMANDS = ("run", "report", "compare", "list", "data", "tune", "cluster", "schema", "perf")
