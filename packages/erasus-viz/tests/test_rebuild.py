"""``erasus report RUN_DIR`` redraws every plot and report.html from the run's files alone,
byte for byte, without the models."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path


def _pngs(run_dir: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted((run_dir / "plots").glob("*.png"))}


def test_erasus_report_rebuilds_the_same_images_without_the_models(cli, viz_run, tmp_path):
    copy = tmp_path / "copied-run"
    shutil.copytree(viz_run, copy)
    before = _pngs(copy)
    assert len(before) == 8
    shutil.rmtree(copy / "model")  # nothing may need the models
    for png in (copy / "plots").glob("*.png"):
        png.unlink()
    (copy / "report.html").unlink()

    assert cli(["report", str(copy)]) == 0

    assert _pngs(copy) == before
    html = (copy / "report.html").read_text(encoding="utf-8")
    for name in before:
        assert f'data-plot="{name}"' in html
    assert "data-skipped" not in html
    assert html == (viz_run / "report.html").read_text(encoding="utf-8").replace(
        viz_run.name, copy.name)  # the same page, bar the directory name it shows


def test_a_reporter_can_be_rebuilt_alone(cli, viz_run, tmp_path):
    copy = tmp_path / "run"
    shutil.copytree(viz_run, copy)
    (copy / "plots" / "loss_landscape.png").unlink()
    assert cli(["report", str(copy), "--reporter", "loss_landscape"]) == 0
    assert _pngs(copy) == _pngs(viz_run)
