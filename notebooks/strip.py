"""Clear the outputs of notebooks before they are committed: `python notebooks/strip.py [NOTEBOOK ...]`.

Without arguments it strips every notebook in this folder. Outputs, execution counts and per-cell run
metadata (timings, scroll and collapse state, widget state) are removed in place; a notebook already clean is
not rewritten. `--check` changes nothing and exits 1 listing the notebooks that still have outputs (the test
suite runs the same check). `nbstripout` (installed with the `notebooks` extra) does the same as a git filter.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import nbformat

HERE = Path(__file__).resolve().parent
CELL_METADATA = ("execution", "collapsed", "scrolled", "jupyter", "ExecuteTime")
NOTEBOOK_METADATA = ("widgets", "varInspector", "toc")


def dirty_cells(nb: nbformat.NotebookNode) -> list[int]:
    """Indexes of the cells that carry outputs, an execution count or run metadata."""
    return [
        i
        for i, c in enumerate(nb.cells)
        if c.cell_type == "code"
        and (
            c.get("outputs")
            or c.get("execution_count") is not None
            or any(k in c.metadata for k in CELL_METADATA)
        )
    ]


def strip(nb: nbformat.NotebookNode) -> bool:
    """Strip `nb` in place; True if anything changed."""
    changed = False
    for c in nb.cells:
        if c.cell_type == "code" and (c.get("outputs") or c.get("execution_count") is not None):
            c.outputs, c.execution_count, changed = [], None, True
        for key in CELL_METADATA:
            if key in c.metadata:
                del c.metadata[key]
                changed = True
    for key in NOTEBOOK_METADATA:
        if key in nb.metadata:
            del nb.metadata[key]
            changed = True
    return changed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Clear notebook outputs before committing.")
    parser.add_argument("notebooks", nargs="*", type=Path, help="default: every notebook in notebooks/")
    parser.add_argument(
        "--check", action="store_true", help="change nothing; exit 1 if a notebook has outputs"
    )
    args = parser.parse_args(argv)
    paths = args.notebooks or sorted(HERE.glob("*.ipynb"))
    dirty = []
    for path in paths:
        nb = nbformat.read(path, as_version=4)
        if args.check:
            if dirty_cells(nb):
                dirty.append(path)
        elif strip(nb):
            nbformat.write(nb, path)
            print(f"stripped {path}")
    for path in dirty:
        print(f"{path} has outputs: run python notebooks/strip.py {path}", file=sys.stderr)
    return 1 if dirty else 0


if __name__ == "__main__":
    sys.exit(main())
