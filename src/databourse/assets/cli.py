"""``databourse asset …``: registering data assets and their files from the exchange's console.

The console has the database, so it acts as the exchange (``SYSTEM_PRINCIPAL``) unless
``--as EMAIL`` names a member's user: member actions (drafting, submitting, uploading) must
name one, and then run under that user's principal exactly as over HTTP. The plumbing
shared by the domain consoles (``exchange``, ``acting``, ``run``, ``read``) lives here,
in the lowest of the domains that use it.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer
from pydantic import BaseModel, ValidationError
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, DownloadColumn, Progress, SpinnerColumn, TextColumn
from rich.table import Table

from databourse.auth.policy import SYSTEM_PRINCIPAL, Principal
from databourse.errors import DataBourseError
from databourse.uow import SYSTEM, Actor, UnitOfWork

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from databourse.api.context import AppContext
    from databourse.assets.models import DataAsset, DataFile

asset_app = typer.Typer(
    help="Data assets: registration, certificates, files.", no_args_is_help=True
)
console = Console()
err = Console(stderr=True)
T = TypeVar("T")
M = TypeVar("M", bound=BaseModel)

As = Annotated[
    str | None,
    typer.Option("--as", metavar="EMAIL", help="Act as this user; default: the exchange itself."),
]
Member = Annotated[str, typer.Option("--as", metavar="EMAIL", help="The member's user acting.")]
Reason = Annotated[str | None, typer.Option(help="Why; recorded with the decision.")]
Output = Annotated[
    Path | None, typer.Option("--output", "-o", help="Write to this file instead of stdout.")
]
Body = Annotated[
    Path,
    typer.Option("--file", exists=True, dir_okay=False, help="The JSON body, as the API takes it."),
]


def _problems(exc: ValidationError) -> str:
    return "; ".join(
        f"{'.'.join(str(p) for p in e['loc']) or 'body'}: {e['msg']}" for e in exc.errors()
    )


@contextmanager
def exchange() -> Iterator[AppContext]:
    """The exchange's context for one command; a refusal becomes one line and exit code 1."""
    from databourse.api.context import AppContext
    from databourse.settings import get_settings

    ctx = AppContext.build(get_settings())
    try:
        yield ctx
    except DataBourseError as exc:
        err.print(f"[red]error[/red] ({exc.slug}): {escape(exc.detail)}")
        raise typer.Exit(1) from exc
    except ValidationError as exc:
        err.print(f"[red]invalid input[/red]: {escape(_problems(exc))}")
        raise typer.Exit(1) from exc
    finally:
        ctx.compute.close()
        ctx.db.dispose()


def acting(session: Session, email: str | None) -> Principal:
    """Who a command runs as: the active user named by ``--as``, else the exchange."""
    if email is None:
        return SYSTEM_PRINCIPAL
    from databourse.auth.services import principal_for_email

    return principal_for_email(session, email)


def actor_of(principal: Principal) -> Actor:
    """The ledger's actor for a principal (the exchange files as ``system:exchange``)."""
    if principal is SYSTEM_PRINCIPAL:
        return SYSTEM
    return Actor(principal.kind, principal.id, principal.org_id)


def run(ctx: AppContext, email: str | None, fn: Callable[[UnitOfWork, Principal], T]) -> T:
    """One command in one unit of work, committed with its ledger entries."""
    with ctx.reads() as session:
        principal = acting(session, email)
    with UnitOfWork(ctx.writes, actor_of(principal)) as uow:
        out = fn(uow, principal)
        uow.commit()
    return out


def read(ctx: AppContext, email: str | None, fn: Callable[[Session, Principal], T]) -> T:
    """A query in one read session."""
    with ctx.reads() as session:
        return fn(session, acting(session, email))


def load_body(path: Path, model: type[M]) -> M:
    """A request body from a JSON file, validated as the API validates it."""
    try:
        return model.model_validate_json(path.read_bytes())
    except ValidationError as exc:
        err.print(f"[red]invalid {escape(path.name)}[/red]: {escape(_problems(exc))}")
        raise typer.Exit(1) from exc


def emit_json(doc: Any, output: Path | None) -> None:
    """JSON to a file, or plain to stdout (no Rich markup, so it can be piped)."""
    text = json.dumps(doc, ensure_ascii=False, indent=2) + "\n"
    if output is None:
        print(text, end="")
        return
    output.write_text(text, encoding="utf-8")
    console.print(f"written to {escape(str(output))}")


def pairs_table(rows: Iterable[tuple[str, Any]], title: str | None = None) -> Table:
    """A two-column table of facts about one object."""
    table = Table(show_header=False, title=title, box=None, title_justify="left")
    table.add_column(style="bold", no_wrap=True)
    table.add_column(overflow="fold")  # hashes and ids are shown whole, folded if need be
    for name, value in rows:
        table.add_row(name, escape("" if value is None else str(value)))
    return table


def id_table(*columns: str, title: str | None = None) -> Table:
    """A table led by the id, which commands take: it is never wrapped nor cut."""
    table = Table(title=title)
    table.add_column("id", no_wrap=True, min_width=24)
    for name in columns:
        table.add_column(name)
    return table


def _assets_table(assets: Iterable[DataAsset]) -> Table:
    table = id_table("title", "status", "grade", "industry")
    for a in assets:
        grade = a.grade + (f"-{a.sub_grade}" if a.sub_grade else "")
        table.add_row(a.id, escape(a.title), a.status, grade, a.industry)
    return table


@asset_app.command("create")
def asset_create(email: Member, file: Body) -> None:
    """Draft the registration of an asset the user's organisation holds."""
    from databourse.assets import schemas, services

    data = load_body(file, schemas.AssetIn)
    with exchange() as ctx:
        asset = run(ctx, email, lambda uow, p: services.create(uow, p, data))
    console.print(f"created asset {asset.id} ([bold]{asset.status}[/bold])")


@asset_app.command("list")
def asset_list(
    org_id: Annotated[str | None, typer.Option("--org")] = None,
    status: Annotated[str | None, typer.Option()] = None,
    limit: Annotated[int, typer.Option(min=1, max=1000)] = 100,
    email: As = None,
) -> None:
    """List assets, optionally of one organisation or in one state."""
    from databourse.assets import services

    with exchange() as ctx:
        rows = read(ctx, email, lambda s, p: services.list_assets(s, p, org_id, status, limit, 0))
    console.print(_assets_table(rows))


@asset_app.command("show")
def asset_show(asset_id: str, email: As = None) -> None:
    """An asset's registration: source, rights, grade, personal data and status."""
    from databourse.assets import services

    with exchange() as ctx:
        a = read(ctx, email, lambda s, p: services.get(s, p, asset_id))
    rights = ", ".join(
        f"{g['right']} → {g.get('holder_name') or g['holder_org_id']} from {g['starts_on']}"
        for g in a.rights
    )
    console.print(
        pairs_table(
            [
                ("id", a.id),
                ("organisation", a.org_id),
                ("title", a.title),
                ("industry", a.industry),
                ("grade", a.grade + (f" (sub-grade {a.sub_grade})" if a.sub_grade else "")),
                ("source", f"{a.source['kind']}: {a.source['description']}"),
                ("rights", rights),
                ("personal info", "sensitive" if a.sensitive_personal_info else a.personal_info),
                ("status", f"{a.status} (revision {a.revision})"),
                ("reviewed by", a.reviewed_by),
                ("decision reason", a.decision_reason),
                ("updated", a.updated_at.isoformat(timespec="seconds")),
            ]
        )
    )


def _step(asset_id: str, step: str, email: str | None, reason: str | None, **kw: Any) -> None:
    from databourse.assets import services

    with exchange() as ctx:
        asset = run(
            ctx, email, lambda uow, p: services.transition(uow, p, asset_id, step, reason, **kw)
        )
    console.print(f"{asset.id} is now [bold]{asset.status}[/bold]")


@asset_app.command("submit")
def asset_submit(asset_id: str, email: Member) -> None:
    """The merchant submits its draft for registration."""
    _step(asset_id, "submit", email, None)


@asset_app.command("cancel")
def asset_cancel(asset_id: str, email: Member, reason: Reason = None) -> None:
    """The merchant withdraws its asset (refused while products use it)."""
    _step(asset_id, "cancel", email, reason)


@asset_app.command("register")
def asset_register(asset_id: str, reason: Reason = None, email: As = None) -> None:
    """Register a submitted asset: its certificate (登记凭证) is issued on the ledger."""
    _step(asset_id, "register", email, reason)


@asset_app.command("reject")
def asset_reject(asset_id: str, reason: Annotated[str, typer.Option()], email: As = None) -> None:
    """Send a submitted asset back to its merchant."""
    _step(asset_id, "reject", email, reason)


@asset_app.command("dispute")
def asset_dispute(asset_id: str, reason: Annotated[str, typer.Option()], email: As = None) -> None:
    """Freeze an asset under dispute: its products leave the catalog at once."""
    _step(asset_id, "dispute", email, reason)


@asset_app.command("resolve")
def asset_resolve(
    asset_id: str,
    reason: Annotated[str, typer.Option()],
    outcome: Annotated[str, typer.Option(help="restore or cancel")] = "restore",
    email: As = None,
) -> None:
    """End a dispute: the asset is restored to its state before it, or cancelled."""
    if outcome not in ("restore", "cancel"):
        raise typer.BadParameter("restore or cancel", param_hint="--outcome")
    _step(asset_id, "resolve", email, reason, outcome=outcome)


@asset_app.command("certificate")
def asset_certificate(asset_id: str, output: Output = None, email: As = None) -> None:
    """The registration certificate: a ledger receipt, checked offline by receipt verify."""
    from databourse.assets import services
    from databourse.ledger import services as ledger

    with exchange() as ctx:

        def certify(uow: UnitOfWork, p: Principal) -> dict[str, Any]:
            asset = services.get(uow.session, p, asset_id)
            seq = services.certificate_seq(uow.session, asset)
            return ledger.receipt(uow, p, ctx.log_key, seq)

        doc = run(ctx, email, certify)
    emit_json(doc, output)


def _file_facts(f: DataFile) -> Table:
    columns = ", ".join(f"{c['name']}:{c['type']}" for c in f.columns)
    return pairs_table(
        [
            ("file", f.id),
            ("version", f.version),
            ("rows", f.row_count),
            ("columns", columns),
            ("format", f.format),
            ("encoding", f.encoding or "n/a"),
            ("bytes", f.byte_size),
            ("sha256", f.sha256),
            ("chunks", f"{f.chunk_count} chunks of up to {f.chunk_rows} rows"),
            ("chunk root", f.chunk_root),
        ],
        title=f"version {f.version} of {f.asset_id}",
    )


@asset_app.command("upload")
def asset_upload(
    asset_id: str,
    path: Annotated[Path, typer.Argument(exists=True, dir_okay=False, help="A CSV or Parquet")],
    email: Member,
    encoding: Annotated[
        str | None, typer.Option(help="The CSV's encoding; detected if omitted")
    ] = None,
    schema_changed: Annotated[
        bool, typer.Option("--schema-changed", help="The columns changed on purpose.")
    ] = False,
) -> None:
    """Upload a new version of the asset's data: validated, described and committed."""
    from databourse.assets import uploads

    with exchange() as ctx:
        with ctx.reads() as session:
            principal = acting(session, email)
        with (
            Progress(
                SpinnerColumn(),
                TextColumn("receiving, checking and committing {task.description}"),
                BarColumn(),
                DownloadColumn(),
                console=err,
                transient=True,
            ) as bar,
            bar.open(path, "rb", description=path.name) as source,
        ):
            row = uploads.upload(
                ctx.writes,
                actor_of(principal),
                principal,
                ctx.store,
                asset_id,
                filename=path.name,
                source=source,
                encoding=encoding,
                schema_changed=schema_changed,
            )
    console.print(_file_facts(row))


@asset_app.command("files")
def asset_files(asset_id: str, email: As = None) -> None:
    """The asset's file versions, oldest first."""
    from databourse.assets import uploads

    with exchange() as ctx:
        rows = read(ctx, email, lambda s, p: uploads.list_files(s, p, asset_id))
    table = id_table("version", "name", "rows", "encoding", "chunks")
    for f in rows:
        table.add_row(
            f.id,
            str(f.version),
            escape(f.filename),
            str(f.row_count),
            f.encoding or "",
            str(f.chunk_count),
        )
    console.print(table)


@asset_app.command("prove")
def asset_prove(file_id: str, index: int, output: Output = None, email: As = None) -> None:
    """One chunk of a file's rows with its proof against the registered chunk root."""
    from databourse.assets import uploads

    with exchange() as ctx:
        proof = read(ctx, email, lambda s, p: uploads.chunk_proof(s, p, ctx.store, file_id, index))
    emit_json(proof.model_dump(mode="json"), output)


@asset_app.command("verify-chunk")
def asset_verify_chunk(
    file: Annotated[Path, typer.Argument(exists=True, dir_okay=False)],
    root: Annotated[
        str | None,
        typer.Option(
            help="The chunk root from a source you trust (the file's ledger entry); "
            "default: the root stated in the proof file."
        ),
    ] = None,
) -> None:
    """Verify a chunk proof offline: no database, no network."""
    from databourse.assets import commitment

    try:
        doc = json.loads(file.read_text(encoding="utf-8"))
        commitment.verify_chunk(
            doc["rows"], doc["index"], doc["chunk_count"], doc["proof"], root or doc["chunk_root"]
        )
    except KeyError as exc:
        err.print(f"[red]INVALID[/red]: the proof file has no {exc}")
        raise typer.Exit(1) from exc
    except (ValueError, TypeError, OSError) as exc:  # ProofError is a ValueError
        err.print(f"[red]INVALID[/red]: {escape(str(exc))}")
        raise typer.Exit(1) from exc
    trusted = "the given root" if root else "the root stated in the file"
    console.print(
        f"[green]VALID[/green]: {len(doc['rows'])} rows are chunk {doc['index']} of "
        f"{doc['chunk_count']} of file {escape(str(doc.get('file_id', '?')))} under {trusted}"
    )
