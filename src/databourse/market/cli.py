"""``databourse trade …``: negotiations, contracts, signatures, payments and auctions."""

from __future__ import annotations

import typer

trade_app = typer.Typer(help="Negotiations, contracts and trades.", no_args_is_help=True)
