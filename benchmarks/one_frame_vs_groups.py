"""One-frame training/scoring against the device-group path, on copies of one database.

Used for benchmarks/RESULTS.md (issue 13). From a scratch folder with a config.toml:

    itap generate --devices 100 --hours 24             # W2 into data/itap.db
    cp -r data old && cp -r data new
    for m in old new; do for s in train score; do
        /usr/bin/time -v python one_frame_vs_groups.py $m $s $PWD/$m config.toml
    done; done

``old`` runs ``train_model`` / ``score_pending``; ``new`` runs ``train_profile`` /
``score_backlog`` with ``cluster = "none"``. Train uses the first 12 h.
"""

import sys
import time

from itap_engine.config import load_settings
from itap_engine.store.sql import Store

mode, stage, folder, config = sys.argv[1:5]
settings = load_settings(config).with_overrides(
    database={"url": f"sqlite:///{folder}/itap.db"}, paths={"artifacts_dir": f"{folder}/artifacts"}
)
store = Store(settings)
until = 1767225600000 + 12 * 3600 * 1000  # 2026-01-01T12:00
started = time.perf_counter()
if stage == "train":
    if mode == "old":
        from itap_engine.detection.scoring import train_model

        model = train_model(store, settings, "industrial", train_until_ms=until)
    else:
        from itap_engine.compute.cluster import LocalExecutor
        from itap_engine.compute.train import train_profile

        model = train_profile(LocalExecutor(), store, settings, "industrial", train_until_ms=until)
    print(mode, stage, model.threshold, round(time.perf_counter() - started, 2))
else:
    if mode == "old":
        from itap_engine.detection.scoring import score_pending

        result = score_pending(store, settings, "industrial")
    else:
        from itap_engine.compute.cluster import LocalExecutor
        from itap_engine.compute.score import score_backlog

        result = score_backlog(LocalExecutor(), store, settings, "industrial")
    print(mode, stage, result.rows, result.anomalous, result.alerts_opened, round(time.perf_counter() - started, 2))
store.close()
