"""A witness as a small HTTP service (C2SP tlog-witness ``POST /add-checkpoint``).

Run by a regulator or any other party on its own machine (``databourse witness serve``),
so that its key never touches the exchange. Its memory is a JSON file written atomically
before the cosignature is returned.
"""

from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.responses import PlainTextResponse

from databourse.ledger.note import Signer, Verifier
from databourse.ledger.witness import Refusal, add_checkpoint, parse_request


def load_state(path: Path) -> dict[str, tuple[int, bytes]]:
    if not path.exists():
        return {}
    raw = json.loads(path.read_text())
    return {origin: (v["size"], bytes.fromhex(v["root"])) for origin, v in raw.items()}


def save_state(path: Path, state: dict[str, tuple[int, bytes]]) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps({o: {"size": s, "root": r.hex()} for o, (s, r) in state.items()}))
    os.replace(tmp, path)


def create_witness_app(signer_key: str, logs: list[Verifier], state_file: Path) -> FastAPI:
    signer = Signer.from_key(signer_key, cosignature=True)
    known = {v.name: v for v in logs}
    lock = threading.Lock()
    app = FastAPI(title="DataBourse witness", docs_url=None, redoc_url=None)

    @app.post("/add-checkpoint")
    async def add(request: Request) -> PlainTextResponse:
        text = (await request.body()).decode("utf-8", errors="replace")
        with lock:  # one decision at a time: the state is read, checked and written
            state = load_state(state_file)
            try:
                req = parse_request(text)
                (size, root), line = add_checkpoint(state, known, req, signer, int(time.time()))
            except Refusal as r:
                media = "text/x.tlog.size" if r.status == 409 else "text/plain"
                return PlainTextResponse(
                    r.body or r.reason + "\n", status_code=r.status, media_type=media
                )
            origin = req.note.split("\n", 1)[0]
            state[origin] = (size, root)
            save_state(state_file, state)
        return PlainTextResponse(line)

    return app
