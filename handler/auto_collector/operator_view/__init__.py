"""The operator's command, `fund-collector` (cli.py): the status view - the model of what it shows (model.py),
how it reads the table (queries.py, through the function's own store.py), how it shows it (render.py) - and one
call of the deployed function (deployed.py). Importable with boto3 alone: nothing here needs Powertools."""

from .cli import call_function, main, status

__all__ = ["call_function", "main", "status"]
