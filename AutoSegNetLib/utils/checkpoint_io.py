"""The one reader and the one writer of checkpoint files (``*.pth``), for training, prediction and export.

Reading never runs code from the file: ``torch.load(weights_only=True)`` builds only tensors, numbers, strings,
``None`` and plain containers, plus NumPy arrays and scalars of numeric types, which NumPy rebuilds from raw bytes
(our checkpoints written before the random state was stored as plain numbers hold it as an array; nnU-Net's hold
NumPy scalars in their logs). A file that needs any other Python object is refused with the objects named. Every
error names the file. Writing keeps to the same plain types (NumPy scalars become Python numbers; anything else is
a ``TypeError`` naming the field), goes through a temporary file that is ``fsync``-ed and renamed, and reports a
full disk as such.
"""

from __future__ import annotations

import errno
import logging
import pickle
import re
from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from AutoSegNetLib.errors import AutoSegNetError
from AutoSegNetLib.layout import CHECKPOINT_FILE_GLOB, CHECKPOINT_FORMAT, CHECKPOINT_VERSION
from AutoSegNetLib.utils.atomic import atomic_path

log = logging.getLogger(__name__)

_PLAIN_SCALARS = (type(None), bool, int, float, str, bytes, torch.dtype, torch.device, torch.Size)
_NUMERIC_DTYPES = ("bool", "int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64", "float16",
                   "float32", "float64")
_FULL_DISK = {errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)}


class UnsafeCheckpointError(AutoSegNetError):
    """A checkpoint that holds Python objects whose loading could run code from the file (``names``: their
    ``module.name``)."""

    def __init__(self, path: Path, names: list[str]) -> None:
        self.path, self.names = path, names
        super().__init__(
            f"{path} holds Python objects besides tensors and plain data ({', '.join(names)}); loading it would run "
            "code from the file, so it is refused. AutoSegNet never writes such objects: the file was changed or "
            "comes from another program. nnU-Net checkpoints are converted with `autosegnet import-nnunet` "
            "(--trust-checkpoints only for files from a source you trust)."
        )


# ----- reading ------------------------------------------------------------------------------------------------
def read_checkpoint(path: str | Path, required: Sequence[str] = ()) -> dict[str, Any]:
    """The checkpoint dict at ``path`` (tensors on the CPU), checked for our format, version and ``required``
    fields. Errors name the file: missing, truncated/not a checkpoint, refused objects, wrong format or version."""
    path = Path(path)
    data = load_plain(path)
    if not isinstance(data, dict) or data.get("format") != CHECKPOINT_FORMAT:
        raise AutoSegNetError(
            f"{path} is not an AutoSegNet checkpoint (no 'format': {CHECKPOINT_FORMAT!r}). nnU-Net model folders are "
            "converted with `autosegnet import-nnunet`."
        )
    if data.get("version") != CHECKPOINT_VERSION:
        raise AutoSegNetError(
            f"{path}: checkpoint version {data.get('version')!r} is not supported (this engine reads version "
            f"{CHECKPOINT_VERSION}); use the engine version that wrote it."
        )
    missing = [key for key in required if key not in data]
    if missing:
        raise AutoSegNetError(f"{path} is an AutoSegNet checkpoint without {', '.join(map(repr, missing))}.")
    return data


def load_plain(path: str | Path) -> Any:
    """``torch.load`` of ``path`` allowing only plain data, tensors and numeric NumPy arrays/scalars.

    Raises :class:`UnsafeCheckpointError` for other Python objects and :class:`AutoSegNetError` for a missing,
    unreadable, truncated or foreign file.
    """
    path = Path(path)
    if not path.is_file():
        raise AutoSegNetError(f"Checkpoint {path} does not exist.")
    try:
        with torch.serialization.safe_globals(numpy_safe_globals()):
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        names = _unsafe_globals(path, error)
        if names is None:
            raise _damaged(path, error) from None
        raise UnsafeCheckpointError(path, names) from None
    except (PermissionError, IsADirectoryError) as error:
        raise AutoSegNetError(f"Checkpoint {path} cannot be read: {error.strerror}.") from None
    except Exception as error:  # torch reports damaged files as RuntimeError, EOFError, OSError(EINVAL), KeyError...
        raise _damaged(path, error) from None


def numpy_safe_globals() -> list[Any]:
    """What NumPy arrays and scalars of numeric types need to be rebuilt (no code from the file runs)."""
    try:
        from numpy._core import multiarray
    except ImportError:  # NumPy < 2
        from numpy.core import multiarray  # type: ignore[no-redef]
    rebuild = [multiarray._reconstruct, multiarray.scalar]
    old_names = [(f, f"numpy.core.multiarray.{f.__name__}") for f in rebuild]  # pickled by NumPy 1
    new_names = [(f, f"numpy._core.multiarray.{f.__name__}") for f in rebuild]  # pickled by NumPy 2
    return [*old_names, *new_names, np.ndarray, np.dtype, *(type(np.dtype(d)) for d in _NUMERIC_DTYPES)]


def _unsafe_globals(path: Path, error: pickle.UnpicklingError) -> list[str] | None:
    """The Python objects (``module.name``) a refused file needs, or None when the error means damage."""
    text = str(error)
    if "Weights only load failed" not in text:
        return None
    allowed = {".".join(_global_name(g)) for g in numpy_safe_globals()}
    try:
        names = torch.serialization.get_unsafe_globals_in_checkpoint(path)
    except Exception:  # a legacy (non-zip) file: take the names from the message
        names = re.findall(r"GLOBAL ([\w.]+)", text)
    return [n for n in names if n not in allowed] or None


def _global_name(entry: Any) -> tuple[str, str]:
    if isinstance(entry, tuple):
        module, _, name = entry[1].rpartition(".")
        return module, name
    return entry.__module__, entry.__qualname__


def _damaged(path: Path, error: BaseException) -> AutoSegNetError:
    """The error for a file torch cannot read, offering the other checkpoints of its folder."""
    text = str(error)
    if "WeightsUnpickler error:" in text:  # torch's long advice is about trusting the file, not about damage
        text = text.split("WeightsUnpickler error:", 1)[1].strip()
    reason = re.split(r"\.\s|\n", text.strip(), maxsplit=1)[0][:160] if text.strip() else "empty file"
    message = f"{path} is truncated or not a checkpoint ({type(error).__name__}: {reason})."
    others = sorted(p.name for p in path.parent.glob(CHECKPOINT_FILE_GLOB) if p.name != path.name and p.is_file())
    if others:
        message += (
            f" The same folder has {', '.join(others)}: move {path.name} aside to resume from them with "
            "`autosegnet train --continue`, or choose one with `--checkpoint`."
        )
    return AutoSegNetError(message)


# ----- writing ------------------------------------------------------------------------------------------------
def write_checkpoint(path: str | Path, checkpoint: dict[str, Any]) -> Path:
    """Write ``checkpoint`` (plain data and tensors) to ``path`` atomically and durably.

    A full disk (or quota) raises :class:`AutoSegNetError` saying so; the previous file at ``path`` is unchanged.
    """
    path = Path(path)
    plain = plain_copy(checkpoint)
    try:
        with atomic_path(path, suffix=".pth", durable=True) as tmp, open(tmp, "wb") as stream:
            torch.save(plain, stream)  # into an open file: a failed write keeps its errno (not "unexpected pos")
    except OSError as error:
        if error.errno in _FULL_DISK:
            raise AutoSegNetError(
                f"No space left on {path.parent} while saving {path.name} ({error.strerror}); the previous "
                f"{path.name} is unchanged. Free some space, then resume with `autosegnet train --continue`."
            ) from None
        raise
    return path


def plain_copy(value: Any, where: str = "checkpoint") -> Any:
    """``value`` with NumPy scalars turned into Python numbers (containers without any are returned as they are,
    keeping e.g. a state dict's ``_metadata``); a ``TypeError`` names any field that is not a tensor, number,
    string, ``None`` or a dict/list/tuple of those."""
    if isinstance(value, torch.Tensor) or type(value) in _PLAIN_SCALARS:
        return value
    if isinstance(value, np.generic) and value.dtype.kind in "biuf":
        return value.item()
    if type(value) in (dict, OrderedDict):
        items = {k: plain_copy(v, f"{where}.{k}") for k, v in value.items()}
        if all(items[k] is v for k, v in value.items()):
            return value
        return type(value)(items)
    if type(value) in (list, tuple):
        items = [plain_copy(v, f"{where}[{i}]") for i, v in enumerate(value)]
        return value if all(a is b for a, b in zip(items, value)) else type(value)(items)
    raise TypeError(
        f"Checkpoint field {where} holds a {type(value).__module__}.{type(value).__qualname__}; checkpoints hold "
        "only tensors, numbers, strings, None and dicts/lists/tuples of them (convert it before saving)."
    )
