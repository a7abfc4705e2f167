"""A bare FastAPI endpoint, the yardstick for intake's throughput in the benchmark."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI

app = FastAPI(title="bare endpoint")


@app.post("/concerns", status_code=201)
def accept(body: dict[str, Any]) -> dict[str, str]:
    """Accept any JSON object and do nothing with it."""
    return {"status": "accepted"}
