"""``python -m localdev.exchange_emulator [--host H] [--port P]``."""

from .standalone import main

raise SystemExit(main())
