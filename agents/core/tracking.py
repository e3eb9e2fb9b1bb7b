"""Run logging: always a local `metrics.jsonl`, and W&B when asked.

No W&B failure may stop training: init falls back to offline, then to local-only, with one
warning, and every later call is guarded the same way.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path

import numpy as np


def _has_wandb_credentials() -> bool:
    if os.environ.get("WANDB_API_KEY"):
        return True
    netrc = Path(os.environ.get("NETRC", Path.home() / ".netrc"))
    return netrc.is_file() and "api.wandb.ai" in netrc.read_text(errors="ignore")


def _jsonable(value):
    if isinstance(value, (np.floating, np.integer)):
        return value.item()
    return value


def _warn(message: str) -> None:
    print(f"mtdqn: warning: {message}", file=sys.stderr)


def _frames_of(row: str) -> float:
    """A row's frames_per_game; a row cut short by a kill counts as past everything."""
    try:
        return json.loads(row)["frames_per_game"]
    except (json.JSONDecodeError, KeyError):
        return float("inf")


def run_tags(config: dict) -> list[str]:
    """W&B tags to filter runs by: suite, sharing mode, balance, preset (what a config has of them), then
    the config's own `wandb_tags`. A suite of many listed games is tagged by its size: W&B refuses tags
    over 64 characters."""
    tags = []
    for key in ("suite", "sharing", "balance", "preset"):
        if key in config:
            value = "none" if config[key] is None else str(config[key])
            if key == "suite" and len(value) > 58:
                value = f"{value.count(',') + 1}-games"
            tags.append(f"{key}:{value}")
    return tags + [t.strip() for t in (config.get("wandb_tags") or "").split(",") if t.strip()]


def _new_id() -> str:
    """A W&B run id (8 lowercase letters and digits), chosen here so the first run can name its group."""
    import secrets
    import string

    return "".join(secrets.choice(string.ascii_lowercase + string.digits) for _ in range(8))


def sync_command(wandb_dir: Path) -> str:
    """`wandb sync` of every offline W&B run in a run folder's wandb/, oldest first (the folder names
    begin with their start time), so resumed segments upload in the order they were trained."""
    return "wandb sync " + " ".join(str(p) for p in sorted(wandb_dir.glob("offline-run-*")))


class Tracker:
    """Writes metrics to `run_dir/metrics.jsonl` and mirrors them to a W&B run if there is one."""

    def __init__(self, run_dir: Path, wandb_run=None):
        self.run_dir = run_dir
        self.metrics_path = run_dir / "metrics.jsonl"
        self.wandb = wandb_run
        self.mode = None  # online or offline, once W&B runs

    @property
    def run_id(self) -> str | None:
        return self.wandb.id if self.wandb is not None else None

    def segment(self) -> dict | None:
        """What a resumed run needs to continue this W&B run: id, group and mode (None without W&B)."""
        if self.wandb is None:
            return None
        return {"id": self.wandb.id, "group": self.wandb.group, "mode": self.mode}

    @classmethod
    def start(cls, run_dir: Path, config: dict, *, track: bool, project: str, entity: str | None,
              group: str | None, previous: dict | None = None, job_type: str = "train") -> "Tracker":
        """W&B online if it can be, else offline, else local logs only: one warning, never an exception.

        `previous` (a resumed run's `segment()`): online after online appends to the same W&B run.
        Anything else starts a new W&B run in the first one's group: a second offline folder with the
        same id would restart `_step` at 0, and syncing it can erase the first one's history. Every run
        of one folder shares a group (--wandb-group, else the first run's id) and charts on frames_per_game."""
        if not track:
            return cls(run_dir)
        try:
            import wandb
        except Exception as e:  # a broken install must not stop training either
            _warn(f"W&B unavailable ({type(e).__name__}: {e}); logging to {run_dir / 'metrics.jsonl'} only")
            return cls(run_dir)

        modes = [os.environ.get("WANDB_MODE") or ("online" if _has_wandb_credentials() else "offline")]
        if modes[0] == "online":
            modes.append("offline")
        for mode in modes:
            same = bool(previous) and previous["mode"] == mode == "online"
            run_id = previous["id"] if same else _new_id()
            run_group = (previous or {}).get("group") or group or (run_id if job_type == "train" else None)
            try:
                run = wandb.init(project=project, entity=entity, group=run_group, name=run_dir.name, config=config,
                                 dir=str(run_dir), job_type=job_type, mode=mode, id=run_id, tags=run_tags(config),
                                 resume="allow" if same else None, reinit="create_new",  # seeds of one process
                                 settings=wandb.Settings(init_timeout=float(os.environ.get("WANDB_INIT_TIMEOUT", 60))))
            except Exception as e:  # never let tracking stop training
                then = "trying offline" if mode != modes[-1] else f"logging to {run_dir / 'metrics.jsonl'} only"
                _warn(f"W&B {mode} init failed ({type(e).__name__}: {str(e).splitlines()[0][:200]}); {then}")
                continue
            for prefix in ("train", "eval", "perf", "replay", "conflict"):
                run.define_metric(f"{prefix}/*", step_metric="frames_per_game")
            if mode == "offline":
                print(f"W&B is offline; upload later, every segment of the run in order, with: "
                      f"{sync_command(Path(run.dir).parent.parent)}", file=sys.stderr)
            tracker = cls(run_dir, run)
            tracker.mode = mode
            tracker.save_files()
            return tracker
        return cls(run_dir)

    def save_files(self, names=("config.yaml", "command.txt")) -> None:
        """Copy run-folder files into the W&B run's files (config.yaml and command.txt at the start and the
        end, metrics.jsonl at the end): the W&B run then holds what reproduces it and every local row. Copies,
        not W&B's links: a segment synced later must upload these files as they were when it ended, not as a
        later segment of the run left them."""
        if self.wandb is None:
            return
        files = Path(self.wandb.dir)
        for name in names:
            path = self.run_dir / name
            if path.is_file():
                copy = files / name
                try:
                    files.mkdir(parents=True, exist_ok=True)  # WANDB_MODE=disabled names a folder it never makes
                    copy.unlink(missing_ok=True)  # may be a link made by an older mtdqn or by wandb.save
                    shutil.copyfile(path, copy)
                except OSError as e:
                    _warn(f"W&B files: cannot copy {name} ({e.strerror}); it stays in {self.run_dir} only")
                    continue
                self._wandb_call(self.wandb.save, str(copy), base_path=str(files), policy="now")

    def truncate_after(self, frames_per_game: int) -> None:
        """Drop local rows logged past a checkpoint we resume from, so the history never goes backwards."""
        if not self.metrics_path.is_file():
            return
        rows = self.metrics_path.read_text().splitlines(keepends=True)
        kept = [r for r in rows if _frames_of(r) <= frames_per_game]
        if len(kept) != len(rows):
            tmp = self.metrics_path.with_suffix(".tmp")
            tmp.write_text("".join(kept))
            tmp.replace(self.metrics_path)

    def _wandb_call(self, fn, *args, **kwargs):
        if self.wandb is None:
            return
        try:
            fn(*args, **kwargs)
        except Exception as e:
            _warn(f"W&B call failed ({type(e).__name__}: {e}); W&B logging stops, local logs go on")
            self.wandb = None

    def log(self, metrics: dict, frames_per_game: int) -> None:
        row = {"frames_per_game": int(frames_per_game), **{k: _jsonable(v) for k, v in metrics.items()}}
        with self.metrics_path.open("a") as f:
            f.write(json.dumps(row) + "\n")
        if self.wandb is not None:
            self._wandb_call(self.wandb.log, row)

    def log_evaluation(self, report: dict, paths: dict[str, Path], frames_per_game: int,
                       videos: dict[str, Path] | None = None) -> None:
        metrics = {}
        for r in report["games"]:
            metrics[f"eval/{r['game']}/raw_mean"] = r["raw_mean"]
            metrics[f"eval/{r['game']}/raw_std"] = r["raw_std"]
            if "hns" in r:
                metrics[f"eval/{r['game']}/hns"] = r["hns"]
        for name in ("iqm", "median", "mean"):
            if name in report["aggregate"]:
                metrics[f"eval/hns_{name}"] = report["aggregate"][name]["value"]
        self.log(metrics, frames_per_game)
        if self.wandb is None:
            return
        import wandb

        def upload():
            columns = ["game", "frames", "episodes", "raw_mean", "raw_std", "hns"]
            table = wandb.Table(columns=columns, data=[[r.get(c) for c in columns] for r in report["games"]])
            media = {"eval/table": table, "eval/hns_chart": wandb.Image(str(paths["png"])),
                     "frames_per_game": int(frames_per_game)}
            if "curves" in paths:
                media["eval/learning_curves"] = wandb.Image(str(paths["curves"]))
            for game, path in (videos or {}).items():
                media[f"eval/{game}/video"] = wandb.Video(str(path), format="mp4")
            self.wandb.log(media)

        self._wandb_call(upload)

    def log_wandb(self, build) -> None:
        """Log the dict `build()` returns to W&B; built only when W&B is on, failures only warn."""
        if self.wandb is not None:
            self._wandb_call(lambda: self.wandb.log(build()))

    def log_figures(self, figures: dict, frames_per_game: int) -> None:
        """W&B images from matplotlib figure factories (called only when W&B is on)."""
        def build():
            import matplotlib.pyplot as plt
            import wandb

            media = {"frames_per_game": int(frames_per_game)}
            for key, make in figures.items():
                fig = make()
                media[key] = wandb.Image(fig)
                plt.close(fig)
            return media

        self.log_wandb(build)

    def log_checkpoint(self, path: Path, frames_per_game: int) -> None:
        if self.wandb is None:
            return
        import wandb

        def upload():
            artifact = wandb.Artifact(f"{self.wandb.id}-checkpoint", type="model",
                                      metadata={"frames_per_game": int(frames_per_game)})
            artifact.add_file(str(path), skip_cache=True, policy="immutable")  # no copy in the home folder
            self.wandb.log_artifact(artifact, aliases=["latest", f"frames-{frames_per_game}"])

        self._wandb_call(upload)

    def finish(self) -> None:
        if self.wandb is not None:
            self.save_files(["config.yaml", "command.txt", "metrics.jsonl"])
        self._wandb_call(lambda: self.wandb.finish())
