"""``databourse money …``: accounts, deposits and withdrawals, fees, agency, statements."""

from __future__ import annotations

import typer

money_app = typer.Typer(help="Accounts, payment rails, fees and statements.", no_args_is_help=True)
