"""``itap train``: fit a new model version for a profile on a window of normal operation."""

from __future__ import annotations

import argparse
import time
from typing import TYPE_CHECKING

from itap_engine.errors import ItapError
from itap_engine.modes.commands.options import add_cluster_argument

if TYPE_CHECKING:
    from itap_engine.config import Settings

HELP = "train a new anomaly model version on normal history (the newest becomes active)"


def parse_ts(text: str | None, option: str) -> int | None:
    """An ISO 8601 time (naive = UTC) or epoch milliseconds, as epoch ms."""
    import pandas as pd

    if text is None:
        return None
    if text.strip().lstrip("-").isdigit():
        return int(text)
    try:
        stamp = pd.Timestamp(text)
    except (ValueError, TypeError):
        raise ItapError(
            f"{option} {text!r}: not a time; use ISO 8601 (2026-01-01T06:00) or epoch milliseconds"
        ) from None
    if stamp.tzinfo is not None:
        stamp = stamp.tz_convert("UTC").tz_localize(None)
    return int(stamp.value // 1_000_000)


class _Window(argparse.Action):
    """--train-from / --train-until apply to the profile, or to the last --device named before them."""

    def __call__(self, parser, namespace, values, option_string=None) -> None:
        windows = getattr(namespace, "device_windows", None) or []
        if self.dest == "device":
            windows.append({"device": values, "from": None, "until": None})
        elif windows:
            windows[-1][self.dest.removeprefix("train_")] = values
        else:
            setattr(namespace, self.dest, values)
        namespace.device_windows = windows


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--profile", default="industrial", help="profile declared in config (default: industrial)")
    parser.add_argument(
        "--train-until",
        metavar="TS",
        action=_Window,
        help="last reading of the known-good window (ISO 8601 or epoch ms); after --device D, of D's",
    )
    parser.add_argument(
        "--train-from",
        metavar="TS",
        action=_Window,
        help="first reading of the window (default: the oldest); after --device D, of D's",
    )
    parser.add_argument(
        "--device",
        metavar="D",
        action=_Window,
        help="give device D its own known-good window with the --train-from/--train-until that "
        "follow it; repeatable. Other devices use the profile's window. Stored with the model "
        "version and kept by later retrains",
    )
    parser.add_argument(
        "--exclude-labelled",
        action="store_true",
        help="leave readings with a ground-truth label (and the windows after them) out of "
        "training; by default labels never choose training rows",
    )
    parser.add_argument("--json", action="store_true", help="print the new version as JSON")
    add_cluster_argument(parser)
    parser.set_defaults(device_windows=[])


def run(args: argparse.Namespace, settings: Settings) -> int:
    from itap_engine.compute.cluster import open_executor
    from itap_engine.compute.train import train_profile
    from itap_engine.modes.render.output import console, print_json
    from itap_engine.modes.render.progress import task_progress
    from itap_engine.store.queries import model_numbers
    from itap_engine.store.sql import Store, from_epoch_ms

    settings.profile(args.profile)
    until = parse_ts(args.train_until, "--train-until")
    since = parse_ts(args.train_from, "--train-from")
    windows = {
        str(w["device"]): (parse_ts(w["from"], "--train-from"), parse_ts(w["until"], "--train-until"))
        for w in args.device_windows
    }
    store = Store(settings)
    started = time.perf_counter()
    try:
        with open_executor(settings, args.cluster) as executor, task_progress(f"train {args.profile}") as progress:
            model = train_profile(
                executor,
                store,
                settings,
                args.profile,
                train_until_ms=until,
                train_from_ms=since,
                device_windows=windows or None,
                exclude_labelled=args.exclude_labelled,
                progress=progress,
            )
        # the profile's own count (v1, v2, ...), as the console, --once and the events say
        number = model_numbers(store, {model.profile: model.version_id})[model.profile]
    finally:
        store.close()
    seconds = time.perf_counter() - started
    payload = {
        "version": number,
        "version_id": model.version_id,
        "profile": model.profile,
        "detector": model.detector_name,
        "threshold": model.threshold,
        "features": len(model.feature_names),
        "train_start": model.train_start,
        "train_end": model.train_end,
        "device_windows": {d: list(w) for d, w in model.device_windows.items()},
        "seconds": round(seconds, 2),
    }
    if args.json:
        print_json(payload)
        return 0
    span = from_epoch_ms([model.train_start or 0, model.train_end or 0])
    console().print(
        f"trained {model.profile} model v{number} ({model.detector_name}, "
        f"{len(model.feature_names)} features) on {span[0]} .. {span[1]}; threshold {model.threshold:.4g}; "
        f"{seconds:.1f} s"
    )
    return 0
