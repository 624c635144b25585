"""`python -m auto_collector [status] [--table T] [--account L ...] [--last N] [--json]`: the operator's view."""

from __future__ import annotations

import sys

from .operator_view import main

if __name__ == "__main__":
    sys.exit(main())
