"""Experiment tracking of the retraining loop with MLflow (optional: ``pip install 'rag-app[track]'``).

Each iteration becomes one MLflow run: its settings and lineage as parameters, the frozen-split
metrics of the current and the candidate adapter (and their paired difference) as metrics, the
decision as tags, the candidate adapter as an artifact. By default the runs go to a local
``<data_dir>/mlruns`` folder (no server); ``tracking_uri`` names a server instead. The project's
SQLite registry stays the source of truth for what is promoted.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from rag_app.errors import ConfigError

EXPERIMENT = "rag-app-loop"


def log_iteration(
    record: dict[str, Any],
    *,
    data_dir: Path,
    tracking_uri: str | None = None,
    adapter_dir: Path | None = None,
) -> str:
    """Log one loop iteration as an MLflow run; returns the run id."""
    try:
        import mlflow
    except ModuleNotFoundError:
        raise ConfigError("experiment tracking needs MLflow: pip install 'rag-app[track]'") from None
    if tracking_uri is None:
        folder = Path(data_dir) / "mlruns"
        folder.mkdir(parents=True, exist_ok=True)
        tracking_uri = folder.resolve().as_uri()
        os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")  # a local folder, as the issue asks
    mlflow.set_tracking_uri(tracking_uri)
    mlflow.set_experiment(EXPERIMENT)
    with mlflow.start_run(run_name=str(record["candidate"])) as run:
        params = {f"loop.{k}": v for k, v in record.get("settings", {}).items()}
        params.update(
            parent=record.get("parent") or "base",
            candidate=record["candidate"],
            method=record.get("method", ""),
            frozen_ids_hash=record.get("frozen_split", {}).get("ids_hash", ""),
            **{f"data.{k}": v for k, v in record.get("data_hashes", {}).items()},
            **{f"run.{k}": v for k, v in record.get("runs", {}).items()},
        )
        mlflow.log_params({k: str(v)[:500] for k, v in params.items()})
        metrics: dict[str, float] = {"promoted": float(bool(record.get("promoted")))}
        for row in record.get("evidence", []):
            name = row["metric"]
            metrics.update(
                {
                    f"current.{name}": row["a"],
                    f"candidate.{name}": row["b"],
                    f"diff.{name}": row["diff"],
                    f"p_adjusted.{name}": row["p_adjusted"],
                }
            )
        metrics.update({f"seconds.{k}": float(v) for k, v in record.get("stages", {}).items()})
        mlflow.log_metrics(metrics)
        mlflow.set_tags(
            {"decision": "promoted" if record.get("promoted") else "kept", "reason": record["reason"]}
        )
        if adapter_dir is not None and Path(adapter_dir).is_dir():
            mlflow.log_artifacts(str(adapter_dir), artifact_path="adapter")
        return str(run.info.run_id)
