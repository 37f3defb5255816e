"""``databourse delivery …``: a contract's tables, downloads, and leak tracing.

Members act with ``--as EMAIL`` as over HTTP. ``download`` grants a download exactly as
``POST /contracts/{id}/downloads`` does and writes the buyer's fingerprinted copy to a
file with a progress bar; ``trace`` uploads nothing — it reads the suspected file here and
ranks the buyers, with a bar per buyer's score.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape
from rich.progress import BarColumn, DownloadColumn, Progress, TransferSpeedColumn
from rich.table import Table

from databourse.assets.cli import As, Member, acting, console, exchange, id_table, read

delivery_app = typer.Typer(
    help="Tables, fingerprinted downloads and leak tracing of dataset products.",
    no_args_is_help=True,
)


@delivery_app.command("tables")
def tables_cmd(contract_id: str, as_: As = None) -> None:
    """The tables a dataset contract delivers, with the columns it licenses."""
    from databourse.delivery import access, copies
    from databourse.market import contracts

    with exchange() as ctx:

        def show(session, principal):  # type: ignore[no-untyped-def]
            c = contracts.get(session, principal, contract_id)
            grant = access.grant_of(c)
            table = Table("table", "version", "rows", "columns", title=f"Tables of {c.id}")
            for t in copies.tables(session, grant):
                schema = copies.arrow_schema(session, grant, t.data_file_id)
                cols = ", ".join(f"{f.name}:{f.type}" for f in schema)
                table.add_row(t.name, str(t.version), f"{t.row_count:,}", escape(cols))
            return table

        console.print(read(ctx, as_, show))


@delivery_app.command("download")
def download_cmd(
    contract_id: str,
    as_: Member,
    purpose: Annotated[str, typer.Option(help="The purpose of use, e.g. research.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Where to write the copy.")],
    fmt: Annotated[str, typer.Option("--format", help="csv or parquet.")] = "csv",
    table: Annotated[str | None, typer.Option(help="Table name (default: the first).")] = None,
    territory: Annotated[str | None, typer.Option(help="Where it is used (default CN).")] = None,
) -> None:
    """Grant a download and write the buyer's fingerprinted copy to a file."""
    from databourse.delivery import access, downloads, files

    if fmt not in files.FORMATS:
        raise typer.BadParameter("csv or parquet", param_hint="--format")
    with exchange() as ctx:
        with ctx.reads() as session:
            principal = acting(session, as_)
        d, _, chosen, copy = downloads.create(
            ctx, principal, contract_id, purpose=purpose, territory=territory, table=table,
            fmt=fmt,
        )  # fmt: skip
        with ctx.reads() as session:
            grant = access.usable(session, contract_id)
        meter = ctx.meter("download")
        size = copy.byte_size if fmt == "parquet" else None
        try:
            with (
                Progress(
                    "[progress.description]{task.description}",
                    BarColumn(),
                    DownloadColumn(),
                    TransferSpeedColumn(),
                    console=console,
                ) as progress,
                out.open("wb") as f,
            ):
                task = progress.add_task(f"{chosen.name} v{chosen.version}", total=size)
                for block in files.content(ctx, d, copy, grant):
                    f.write(block)
                    progress.advance(task, len(block))
        finally:  # the metered rows and bytes are written before the command ends, even
            meter.stop()  # when the copy could not be: the link's first fetch happened
        console.print(
            f"{escape(str(out))}: {copy.row_count:,} rows of {chosen.name} v{chosen.version}, "
            f"your fingerprinted copy (sha256 of the Parquet copy {copy.sha256[:16]}…); "
            f"download {d.id}"
        )


@delivery_app.command("downloads")
def downloads_cmd(contract_id: str, as_: As = None) -> None:
    """The downloads and shared-file links granted under a contract."""
    from databourse.delivery import downloads

    with exchange() as ctx:

        def show(session, principal):  # type: ignore[no-untyped-def]
            t = id_table("path", "format", "issued", "expires", "fetches")
            for d in downloads.list_downloads(session, principal, contract_id):
                t.add_row(
                    d.id, d.path, d.format, d.issued_at.isoformat(timespec="seconds"),
                    d.expires_at.isoformat(timespec="seconds"), str(d.fetches),
                )  # fmt: skip
            return t

        console.print(read(ctx, as_, show))


def _bar(score: float, top: float, width: int = 20) -> str:
    n = 0 if top <= 0 else max(0, round(width * score / top))
    return "█" * n


@delivery_app.command("trace")
def trace_cmd(
    product_id: str,
    suspect: Annotated[Path, typer.Argument(exists=True, dir_okay=False, help="The file.")],
    as_: As = None,
    data_file: Annotated[str | None, typer.Option(help="Trace against this file version.")] = None,
) -> None:
    """Rank the buyers a suspected leak of the product's data came from."""
    from databourse.delivery import tracing

    with exchange() as ctx:
        with ctx.reads() as session:
            principal = acting(session, as_)
        with console.status("Tracing: matching rows and reading the marks…"):
            t = tracing.trace(ctx, principal, product_id, suspect.read_bytes(), data_file)
        with ctx.reads() as session:
            buyers: dict[str, str] = t.result.get("buyers", {})
            names = tracing.buyer_names(session, list(set(buyers.values())))
        ranking = t.result.get("ranking", [])
        top = max((s["score"] for s in ranking), default=0.0)
        table = Table(
            title=f"Trace {t.id}: {t.suspect_rows:,} suspect rows, "
            f"{t.result.get('rows_matched', 0):,} matched"
        )
        table.add_column("contract", no_wrap=True, min_width=24)  # ids are never cut
        table.add_column("buyer")
        table.add_column("score", justify="right")
        table.add_column("", no_wrap=True, min_width=20)  # the score as a bar
        for name in ("matched/evidence", "P(false accusation)", "accused"):
            table.add_column(name)
        for s in ranking:
            buyer = names.get(buyers.get(s["recipient"], ""), "")
            table.add_row(
                s["recipient"], escape(buyer), f"{s['score']:.1f}",
                f"[{'red' if s['accused'] else 'dim'}]{_bar(s['score'], top)}[/]",
                f"{s['matched']}/{s['evidence']}", f"{s['p_false']:.2e}",
                "[bold red]yes[/]" if s["accused"] else "no",
            )  # fmt: skip
        console.print(table)
        console.print(f"On the ledger as trace.completed, subject {t.id}.")


@delivery_app.command("traces")
def traces_cmd(product_id: str, as_: As = None) -> None:
    """The leak traces run on a product."""
    from databourse.delivery import tracing

    with exchange() as ctx:

        def show(session, principal):  # type: ignore[no-untyped-def]
            t = id_table("when", "suspect rows", "accused")
            for tr in tracing.list_traces(session, principal, product_id):
                t.add_row(
                    tr.id, tr.created_at.isoformat(timespec="seconds"), f"{tr.suspect_rows:,}",
                    ", ".join(tr.accused) or "nobody",
                )  # fmt: skip
            return t

        console.print(read(ctx, as_, show))
