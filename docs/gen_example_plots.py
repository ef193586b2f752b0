"""Draw the example plots that docs/viz.md shows, from a real quickstart run.

    python docs/gen_example_plots.py                      # the quickstart as it is
    python docs/gen_example_plots.py --set strategy.epochs=2   # extra overrides

Runs ``erasus run configs/quickstart.yaml`` (with erasus-viz installed) into a temporary
directory and copies its ``plots/*.png`` into ``docs/assets/examples/`` (ignored by git:
the docs build regenerates them), so ``mkdocs build`` finds every image ``viz.md`` links.
"""

from __future__ import annotations

import argparse
import importlib.util
import shutil
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "configs" / "quickstart.yaml"
ASSETS = ROOT / "docs" / "assets" / "examples"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--set", "-s", action="append", default=[], metavar="KEY=VALUE",
                        help="a config override passed to erasus run (repeatable)")
    args = parser.parse_args(argv)
    if importlib.util.find_spec("erasus_viz") is None:
        print("erasus-viz is not installed: pip install ./packages/erasus-viz",
              file=sys.stderr)
        return 1
    from erasus.cli.app import main as erasus

    with tempfile.TemporaryDirectory(prefix="erasus-docs-") as tmp:
        run_dir = Path(tmp) / "quickstart"
        command = ["run", str(CONFIG), "--output", str(run_dir), "--no-progress"]
        for override in args.set:
            command += ["--set", override]
        try:
            erasus(command)
        except SystemExit as exc:
            if exc.code:
                return int(exc.code)
        pngs = sorted((run_dir / "plots").glob("*.png"))
        if not pngs:
            print(f"the run wrote no plots under {run_dir / 'plots'}", file=sys.stderr)
            return 1
        ASSETS.mkdir(parents=True, exist_ok=True)
        for old in ASSETS.glob("*.png"):
            old.unlink()
        for png in pngs:
            shutil.copyfile(png, ASSETS / png.name)
            print(f"wrote {(ASSETS / png.name).relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
