"""The operator's view, `python -m auto_collector status` (see cli.py): the model of what it shows
(model.py), how it reads the table (queries.py), how it shows it (render.py) and the command (cli.py)."""

from .cli import main, status

__all__ = ["main", "status"]
