"""`python -m auto_collector [status|dry-run|invoke] [options]`: the operator's command without installing it
(installed, it is `fund-collector`; see operator_view/cli.py)."""

from __future__ import annotations

import sys

from .operator_view import main

if __name__ == "__main__":
    sys.exit(main(prog="python -m auto_collector"))
