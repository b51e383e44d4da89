"""Where asset values live between steps: pickles under the Dagster instance's storage folder.

The same layout as Dagster's default filesystem IO manager (`<storage>/<asset key path>`), so tools that
read a stored value keep working, but without a log event for every read and write (a plan run read its
inputs 23 times), and written atomically so a killed run never leaves half a file.
"""

from __future__ import annotations

import os
import pickle
import tempfile
from pathlib import Path
from typing import Any

import dagster as dg


class _PickleFiles(dg.IOManager):
    def __init__(self, base_dir: Path) -> None:
        self.base_dir = base_dir

    def _path(self, key: dg.AssetKey) -> Path:
        return self.base_dir.joinpath(*key.path)

    def handle_output(self, context: dg.OutputContext, obj: Any) -> None:
        target = self._path(context.asset_key)
        target.parent.mkdir(parents=True, exist_ok=True)
        handle, temp_name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
        try:
            with os.fdopen(handle, "wb") as temp:
                pickle.dump(obj, temp, protocol=pickle.HIGHEST_PROTOCOL)
            os.replace(temp_name, target)
        except BaseException:
            Path(temp_name).unlink(missing_ok=True)
            raise

    def load_input(self, context: dg.InputContext) -> Any:
        with self._path(context.asset_key).open("rb") as stored:
            return pickle.load(stored)


class AssetValueStore(dg.ConfigurableIOManagerFactory):
    """Pickled asset values under `base_dir`, by default the instance's storage folder."""

    base_dir: str | None = None

    def create_io_manager(self, context: dg.InitResourceContext) -> dg.IOManager:
        if self.base_dir:
            return _PickleFiles(Path(self.base_dir))
        if context.instance is None:
            raise dg.DagsterInvariantViolationError("AssetValueStore needs a base_dir or a Dagster instance")
        base = Path(context.instance.storage_directory())
        return _PickleFiles(base)
