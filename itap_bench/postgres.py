"""PostgreSQL ingestion stages: COPY against executemany, on the same server in the same run.

Each stage inserts the same validated workload rows into a fresh schema
(``itap_bench``, dropped and made again; the database's other schemas are not
touched) through :meth:`Store.insert_readings`: once with ``use_copy = False``
(executemany of ``INSERT ... ON CONFLICT DO NOTHING``, what every release before
COPY did), once with every batch through the COPY staging table, once as the store
does by default (a batch that cannot conflict is copied straight in), then that
again over the same rows (all duplicates, so all through staging). The ratios are
executemany seconds / each stage's seconds.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import sqlalchemy as sa

from itap_bench.runner import WORKLOADS, measured
from itap_engine.config import Settings
from itap_engine.ingest.simulator import Simulator, device_ids_for
from itap_engine.store.sql import Store

SCHEMA = "itap_bench"
EXECUTEMANY = "ingest executemany (PostgreSQL)"


def _bench_url(url: str) -> str:
    """The URL with the bench schema first on the search path."""
    parsed = sa.engine.make_url(url)
    return parsed.update_query_dict({"options": f"-csearch_path={SCHEMA}"}).render_as_string(hide_password=False)


def _fresh_store(settings: Settings, url: str) -> Store:
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        conn.execute(sa.text(f"DROP SCHEMA IF EXISTS {SCHEMA} CASCADE"))
        conn.execute(sa.text(f"CREATE SCHEMA {SCHEMA}"))
    engine.dispose()
    return Store(settings, url=_bench_url(url))


def stages(settings: Settings, url: str, workloads: list[str]) -> list[dict[str, Any]]:
    """executemany, COPY and COPY of duplicates for each workload, on ``url``."""
    from itap_engine.ingest.validate import validate_frame

    results: list[dict[str, Any]] = []
    for name in workloads:
        workload = WORKLOADS[name]
        sim = Simulator(settings, "industrial", device_ids_for("pump", workload.devices), freq_s=workload.freq_s)
        frame = sim.generate(sim.start, sim.start + timedelta(hours=workload.hours))
        now = frame["ts"].max().to_pydatetime()
        accepted = validate_frame(frame, settings.profile("industrial"), settings.validation, now=now).accepted
        del frame
        seconds: dict[str, float] = {}
        plans = (
            (EXECUTEMANY, False, False),
            ("ingest COPY via staging only (PostgreSQL)", True, False),
            ("ingest COPY (PostgreSQL)", True, True),
        )
        for stage, use_copy, direct in plans:
            store = _fresh_store(settings, url)
            store.use_copy, store.copy_direct = use_copy, direct
            try:
                with measured(results, stage, name, len(accepted)) as extra:
                    extra["inserted"] = store.insert_readings("industrial", accepted).inserted
                seconds[stage] = results[-1]["seconds"]
                if use_copy and direct:
                    with measured(results, "re-ingest COPY, all duplicates (PostgreSQL)", name, len(accepted)) as extra:
                        extra["inserted"] = store.insert_readings("industrial", accepted).inserted
                    seconds[results[-1]["stage"]] = results[-1]["seconds"]
            finally:
                store.close()
        for r in results:
            if r["workload"] == name and r["stage"] in seconds and r["stage"] != EXECUTEMANY:
                r["ratio_vs_executemany"] = round(seconds[EXECUTEMANY] / seconds[r["stage"]], 2)
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        conn.execute(sa.text(f"DROP SCHEMA IF EXISTS {SCHEMA} CASCADE"))
    engine.dispose()
    return results
