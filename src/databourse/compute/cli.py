"""``databourse node …`` and ``databourse compute …``.

``node init`` makes a node's key and configuration, ``node serve`` runs it next to the
data. ``node register`` records it with the exchange (which first asks it, signed, what
it holds). ``compute sql|psi|train`` submit a job exactly as ``POST
/contracts/{id}/jobs`` does and run it here with a progress bar; ``jobs``, ``job``,
``cancel`` and ``budget`` read and steer them. Members act with ``--as EMAIL``.
"""

from __future__ import annotations

import json
import os
import secrets
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from databourse.assets.cli import As, Body, Member, acting, console, err, exchange, read, run

node_app = typer.Typer(help="Compute nodes: make, serve and register them.", no_args_is_help=True)
compute_app = typer.Typer(
    help="Privacy computing: DP SQL, private set intersection, federated learning.",
    no_args_is_help=True,
)


# Nodes ------------------------------------------------------------------------------------


@node_app.command("init")
def node_init(
    home: Annotated[Path, typer.Argument(help="The node's directory (created).")],
    name: Annotated[str, typer.Option(help="The node's name, e.g. bank-node.")],
    exchange_key: Annotated[
        str, typer.Option(help="The exchange's node-signing key (GET /api/v1/nodes/exchange-key).")
    ],
    dataset: Annotated[
        list[str] | None,
        typer.Option(help="NAME=PATH of a CSV or Parquet file the node holds (repeatable)."),
    ] = None,
) -> None:
    """Make a node: its Ed25519 key (node.key, readable by you only) and node.toml."""
    from databourse.compute import nodeauth

    home.mkdir(parents=True, exist_ok=True)
    key_path, conf = home / "node.key", home / "node.toml"
    if conf.exists():
        err.print(f"[red]error[/red]: {escape(str(conf))} exists; not overwritten")
        raise typer.Exit(1)
    nodeauth.public_key(exchange_key)  # refuse a malformed key now
    seed = secrets.token_bytes(32)
    fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(nodeauth.b64(seed) + "\n")
    lines = [
        f"name = {json.dumps(name)}",
        f"exchange_key = {json.dumps(exchange_key)}",
        'key_file = "node.key"',
        'outputs = "outputs"',
        "psi_workers = 2",
        "",
        "[datasets]",
    ]
    for spec in dataset or []:
        ds, sep, path = spec.partition("=")
        if not sep or not ds or not path:
            raise typer.BadParameter("NAME=PATH", param_hint="--dataset")
        lines.append(f"{json.dumps(ds)} = {json.dumps(str(Path(path).resolve()))}")
    conf.write_text("\n".join(lines) + "\n", encoding="utf-8")
    public = nodeauth.public_text(nodeauth.private_key(seed))
    console.print(f"node [bold]{escape(name)}[/bold] made in {escape(str(home))}")
    console.print(f"its public key: [bold]{public}[/bold] (register it with the exchange)")


@node_app.command("serve")
def node_serve(
    config: Annotated[Path, typer.Option(exists=True, dir_okay=False, help="node.toml")],
    host: str = "127.0.0.1",
    port: int = 8100,
) -> None:
    """Serve the node: it answers only requests signed by the exchange."""
    import uvicorn

    from databourse.compute.node import NodeConfig
    from databourse.compute.node_app import app_from_config

    cfg = NodeConfig.load(config)
    console.print(f"node {escape(cfg.name)} holds {', '.join(sorted(cfg.datasets)) or 'nothing'}")
    uvicorn.run(app_from_config(cfg), host=host, port=port, log_config=None, access_log=False)


@node_app.command("exchange-key")
def node_exchange_key() -> None:
    """The exchange's node-signing public key, for a node's configuration."""
    with exchange() as ctx:
        console.print(ctx.compute.public_key)


@node_app.command("register")
def node_register(
    as_: Member,
    name: Annotated[str, typer.Option()],
    url: Annotated[str, typer.Option(help="Where the exchange reaches the node.")],
    public_key: Annotated[str, typer.Option(help="The key `node init` printed.")],
) -> None:
    """Register your organisation's node (the exchange asks it for its datasets first)."""
    from databourse.compute import services
    from databourse.compute.schemas import NodeIn

    with exchange() as ctx:
        body = NodeIn(name=name, url=url, public_key=public_key)
        info = services.probe_node(ctx.compute.probe, body)
        n = run(ctx, as_, lambda uow, p: services.register_node(uow, p, body, info))
    console.print(f"registered node {n.id} ({escape(n.name)}) holding {', '.join(n.datasets)}")


@node_app.command("list")
def node_list(as_: Member) -> None:
    """Your organisation's nodes."""
    from databourse.compute import services

    with exchange() as ctx:
        nodes = read(ctx, as_, lambda s, p: services.list_nodes(s, p))
        table = Table("id", "name", "url", "status", "datasets")
        for n in nodes:
            table.add_row(n.id, n.name, escape(n.url), n.status, escape(", ".join(n.datasets)))
        console.print(table)


@node_app.command("revoke")
def node_revoke(node_id: str, as_: As = None) -> None:
    """Revoke a node: no job is sent to it any more."""
    from databourse.compute import services

    with exchange() as ctx:
        n = run(ctx, as_, lambda uow, p: services.revoke_node(uow, p, node_id))
    console.print(f"node {n.id} is {n.status}")


# Services ---------------------------------------------------------------------------------


@compute_app.command("declare")
def compute_declare(product_id: str, file: Body, as_: Member) -> None:
    """Declare what a compute product runs (the JSON body of PUT /products/{id}/compute)."""
    from pydantic import TypeAdapter

    from databourse.compute import services
    from databourse.compute.schemas import ServiceIn

    data = TypeAdapter(ServiceIn).validate_json(file.read_bytes())
    with exchange() as ctx:
        out = run(ctx, as_, lambda uow, p: services.declare(uow, p, product_id, data))
    console.print(f"{out.kind} service of {out.product_id}, revision {out.revision}")


@compute_app.command("show")
def compute_show(product_id: str, as_: As = None) -> None:
    """What a compute product runs; for SQL the schema (bounds and categories, no rows)."""
    from databourse.compute import services

    with exchange() as ctx:
        out = read(ctx, as_, lambda s, p: services.get_service(s, p, product_id))
    console.print(
        f"[bold]{out.kind}[/bold] on {out.node_id or 'the exchange'} (rev {out.revision})"
    )
    if out.kind == "sql":
        schema = out.spec["schema"]
        console.print(f"privacy unit: [bold]{escape(schema['privacy_unit'])}[/bold]")
        for t in schema["tables"]:
            table = Table("column", "type", "bounds", "categories", title=t["name"])
            for c in t["columns"]:
                bounds = "" if c.get("lower") is None else f"{c['lower']:g} … {c['upper']:g}"
                cats = ", ".join(c.get("categories") or [])
                table.add_row(escape(c["name"]), c["type"], bounds, escape(cats))
            console.print(table)
    else:
        console.print_json(json.dumps(out.spec, ensure_ascii=False))


# Jobs -------------------------------------------------------------------------------------


def _submit_and_run(contract_id: str, as_: str, body: Any) -> Any:
    """Submit as the API does, then run the job here, showing its progress."""
    from databourse.compute import jobs
    from databourse.compute.models import Job
    from databourse.errors import DataBourseError

    with exchange() as ctx:
        with ctx.reads() as s:
            principal = acting(s, as_)
        try:
            job = run(ctx, as_, lambda uow, p: jobs.submit(uow, p, contract_id, body))
        except DataBourseError as exc:
            from databourse.assets.cli import actor_of

            job_id = jobs.record_refusal(
                ctx.writes, actor_of(principal), principal, contract_id, body, exc
            )
            if job_id:
                err.print(f"job {job_id} refused")
            raise
        with Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            TextColumn("{task.fields[note]}"),
            TimeElapsedColumn(),
            console=console,
            transient=True,
        ) as bar:
            task = bar.add_task(f"{job.kind} job {job.id}", total=1.0, note="authorised")
            runner = ctx.compute.runner
            original = runner.progress

            def progress(job_id: str, fraction: float, note: str) -> None:
                bar.update(task, completed=fraction, note=escape(note))
                original(job_id, fraction, note)

            runner.progress = progress
            try:
                runner.run(job.id)
            finally:
                runner.progress = original
        with ctx.reads() as s:
            done = s.get(Job, job.id)
            assert done is not None
            return jobs.out(done), jobs.budgets_of(s, principal, contract_id)


def _problem_exit(job: Any) -> None:
    if job.state != "succeeded":
        p = job.problem or {}
        err.print(f"[red]job {job.id} {job.state}[/red]: {escape(str(p.get('detail', '')))}")
        raise typer.Exit(1)


@compute_app.command("sql")
def compute_sql(
    contract_id: str,
    sql: Annotated[str, typer.Argument(help="The query, e.g. SELECT province, COUNT(*) …")],
    as_: Member,
    epsilon: Annotated[float | None, typer.Option(help="The query's ε (DP products).")] = None,
    delta: Annotated[float, typer.Option(help="The query's δ.")] = 0.0,
    purpose: Annotated[str | None, typer.Option(help="Default: the contract's purpose.")] = None,
) -> None:
    """Run a differentially private (or thresholded) SQL query; rows never leave the node."""
    from databourse.compute.schemas import SqlJobIn

    body = SqlJobIn(kind="sql", sql=sql, epsilon=epsilon, delta=delta, purpose=purpose)
    job, budget = _submit_and_run(contract_id, as_, body)
    _problem_exit(job)
    r = job.result
    error = r.get("error") or {}
    table = Table(
        *[f"{c} (±{error[c]:.3g})" if error.get(c) else c for c in r["columns"]],
        title=f"{r['mode']} result from {r.get('node', '')} — job {job.id}",
    )
    for row in r["rows"]:
        table.add_row(*[escape(f"{v:,.2f}" if isinstance(v, float) else str(v)) for v in row])
    console.print(table)
    if r["mode"] == "dp":
        console.print("± is the 95 % half-width of the noise added to each value")
    if r.get("suppressed_groups"):
        console.print(f"{r['suppressed_groups']} group(s) below the minimum size were suppressed")
    for b in budget:
        console.print(
            f"ε spent {job.epsilon:g}; budget of {escape(b.privacy_unit)}: "
            f"{b.remaining_epsilon:g} of {b.epsilon:g} remain"
        )


@compute_app.command("psi")
def compute_psi(
    contract_id: str,
    as_: Member,
    node: Annotated[str, typer.Option(help="Your own node's id (it learns the result).")],
    dataset: Annotated[str, typer.Option(help="Your node's dataset.")],
    column: Annotated[str, typer.Option(help="The column of identifiers to match.")],
    reveal: Annotated[str, typer.Option(help="cardinality or intersection.")] = "cardinality",
    purpose: Annotated[str | None, typer.Option()] = None,
) -> None:
    """Private set intersection between your node and the merchant's, relayed by the
    exchange, which never sees an identifier."""
    from databourse.compute.schemas import PsiJobIn

    body = PsiJobIn.model_validate(
        {"kind": "psi", "node_id": node, "dataset": dataset, "column": column,
         "reveal": reveal, "purpose": purpose}
    )  # fmt: skip
    job, _ = _submit_and_run(contract_id, as_, body)
    _problem_exit(job)
    r = job.result
    if reveal == "cardinality":
        console.print(f"intersection size: [bold]{r['cardinality']:,}[/bold]")
    else:
        where = r.get("output", "the node's outputs")
        console.print(
            f"intersection of [bold]{r['intersection_size']:,}[/bold] identifiers written on "
            f"{escape(r['initiator'])} ({escape(where)}, sha256 {r['sha256'][:16]}…)"
        )
    for t in r["transcript"]:
        console.print(f"  relayed {t['elements']:,} blinded elements from {escape(t['from'])}")


@compute_app.command("train")
def compute_train(
    contract_id: str,
    spec: Annotated[Path, typer.Option(exists=True, dir_okay=False, help="TrainingSpec JSON.")],
    as_: Member,
    node: Annotated[str | None, typer.Option(help="Your own node, to join with its data.")] = None,
    dataset: Annotated[str | None, typer.Option(help="Your node's dataset.")] = None,
    out: Annotated[Path | None, typer.Option("--out", "-o", help="Write the model here.")] = None,
    purpose: Annotated[str | None, typer.Option()] = None,
) -> None:
    """Train a model by federated averaging across the data holders' nodes."""
    from databourse.compute.schemas import FlJobIn

    body = FlJobIn.model_validate(
        {
            "kind": "fl",
            "spec": json.loads(spec.read_text(encoding="utf-8")),
            "participant": {"node_id": node, "dataset": dataset} if node else None,
            "purpose": purpose,
        }
    )
    job, _ = _submit_and_run(contract_id, as_, body)
    _problem_exit(job)
    r = job.result
    _history_chart(r["history"])
    metrics = ", ".join(f"{k} {v:.4f}" for k, v in sorted(r["metrics"].items()))
    console.print(f"after {r['rounds_completed']} rounds on {', '.join(r['nodes'])}: {metrics}")
    if out is not None:
        out.write_text(json.dumps(r, ensure_ascii=False, indent=2), encoding="utf-8")
        console.print(f"model written to {escape(str(out))}")


def _history_chart(history: list[dict[str, float]]) -> None:
    """Per round, the headline metric as a bar: the training curve at a glance."""
    if not history:
        return
    keys = ("auc_pooled", "auc_mean", "r2", "accuracy")
    key = next((k for k in keys if all(k in h for h in history)), None)
    if key is None:
        return
    top = max(h[key] for h in history) or 1.0
    table = Table("round", key, "", title="training")
    for h in history:
        width = max(1, round(40 * h[key] / top))
        table.add_row(str(int(h["round"])), f"{h[key]:.4f}", "█" * width)
    console.print(table)


@compute_app.command("contracts")
def compute_contracts(as_: Member) -> None:
    """Your organisation's contracts on compute products, with what each computes."""
    from sqlalchemy import select

    from databourse.catalog.models import Product
    from databourse.compute.models import ComputeService
    from databourse.market.models import Contract

    with exchange() as ctx, ctx.reads() as s:
        me = acting(s, as_)
        rows = s.execute(
            select(Contract.id, Contract.status, Product.title, ComputeService.kind)
            .join(Product, Product.id == Contract.product_id)
            .outerjoin(ComputeService, ComputeService.product_id == Product.id)
            .where(Product.kind == "compute", Contract.buyer_org_id == me.org_id)
            .order_by(Contract.created_at)
        ).all()
    table = Table("contract", "computes", "status", "product")
    for cid, status, title, kind in rows:
        table.add_row(cid, kind or "—", status, escape(title))
    console.print(table)


@compute_app.command("jobs")
def compute_jobs(contract_id: str, as_: As = None, limit: int = 20) -> None:
    """A contract's jobs, newest first."""
    from databourse.compute import jobs

    with exchange() as ctx:
        rows = read(ctx, as_, lambda s, p: jobs.list_for(s, p, contract_id, limit))
        table = Table("job", "kind", "state", "ε", "progress", "when")
        for j in rows:
            table.add_row(
                j.id, j.kind, j.state, f"{j.epsilon_micro / 1e6:g}", f"{j.progress:.0%}",
                j.created_at.strftime("%Y-%m-%d %H:%M:%S"),
            )  # fmt: skip
        console.print(table)


@compute_app.command("job")
def compute_job(job_id: str, as_: As = None) -> None:
    """One job: state, progress, problem or result."""
    from databourse.compute import jobs

    with exchange() as ctx:
        out = read(ctx, as_, lambda s, p: jobs.out(jobs.get(s, p, job_id)))
    console.print_json(out.model_dump_json())


@compute_app.command("cancel")
def compute_cancel(job_id: str, as_: As = None) -> None:
    """Cancel a job (a running one stops at its next step)."""
    from databourse.compute import jobs

    with exchange() as ctx:
        out = run(ctx, as_, lambda uow, p: jobs.cancel(uow, p, job_id))
    console.print(
        f"job {out.id} is {out.state}"
        + (" (cancel requested)" if out.cancel_requested and out.state == "running" else "")
    )


@compute_app.command("budget")
def compute_budget(contract_id: str, as_: As = None) -> None:
    """A contract's privacy budget: granted, spent, remaining."""
    from databourse.compute import jobs

    with exchange() as ctx:
        rows = read(ctx, as_, lambda s, p: jobs.budgets_of(s, p, contract_id))
    table = Table("privacy unit", "ε granted", "ε spent", "ε left", "δ left", "")
    for b in rows:
        used = 0 if not b.epsilon else round(30 * b.spent_epsilon / b.epsilon)
        table.add_row(
            escape(b.privacy_unit), f"{b.epsilon:g}", f"{b.spent_epsilon:g}",
            f"{b.remaining_epsilon:g}", f"{b.remaining_delta:g}", "█" * used + "░" * (30 - used),
        )  # fmt: skip
    console.print(table)
