"""What a bulk job reads: the files a SOURCE names, minus those its output already holds.

SOURCE is a folder (every image under it), a glob (``photos/**/*.jpg``), or a list: a ``.txt``
file with one path or URI per line, or a ``.parquet`` file with a ``path`` column. Paths and
URIs are opened with pyarrow's filesystems (local, ``s3://``, ``gs://``, ``hdfs://``…).
"""

from __future__ import annotations

import glob
from pathlib import Path

from artifact.images import list_images

GLOB_CHARACTERS = frozenset("*?[")


class SourceError(Exception):
    """SOURCE names nothing usable; the message says what was expected."""


def list_source(source: str) -> list[str]:
    """The paths or URIs ``source`` names, in a stable order."""
    if GLOB_CHARACTERS & set(source):
        found = sorted(p for p in glob.glob(source, recursive=True) if Path(p).is_file())
        if not found:
            raise SourceError(f"SOURCE {source!r}: the pattern matches no file")
        return found
    path = Path(source)
    if path.is_dir():
        images = [str(p) for p in list_images(path)]
        if not images:
            raise SourceError(f"SOURCE {source!r}: no image files in this folder")
        return images
    if path.suffix == ".txt" and path.is_file():
        lines = [line.strip() for line in path.read_text().splitlines()]
        return [line for line in lines if line and not line.startswith("#")]
    if path.suffix == ".parquet" and path.is_file():
        import pyarrow.parquet as pq

        table = pq.read_table(path)
        if "path" not in table.column_names:
            raise SourceError(f"SOURCE {source!r}: no 'path' column (has {table.column_names})")
        return [str(p) for p in table.column("path").to_pylist() if p]
    raise SourceError(
        f"SOURCE {source!r}: not a folder, a glob, a .txt list or a .parquet list of paths"
    )


def done_paths(out: Path) -> set[str]:
    """Paths an earlier run already wrote to ``out`` (a folder of Parquet files), errors
    included: a resumed job skips them."""
    if not out.exists():
        return set()
    import pyarrow.dataset as ds

    table = ds.dataset(str(out), format="parquet").to_table(columns=["path"])
    return {str(p) for p in table.column("path").to_pylist()}
