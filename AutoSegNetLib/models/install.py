"""``install-model``: check a model zip thoroughly, then unpack it into the workspace's results folder.

Refused, with an error that says why: files that are not zips; entries whose path is absolute, contains
``..``, a drive letter or a backslash, is a link, or appears twice; a missing or malformed manifest, or one from
a newer engine / plans / checkpoint version; files missing from the zip or present without being listed; sizes
or sha256 that differ from the manifest; a manifest that lists a model without its plans, dataset.json or
checkpoints; checkpoints that cannot be read as plain tensors (``weights_only``); model folders that exist
already (unless ``force``); a zip that unpacks to more than ``max_size`` bytes (default
:data:`DEFAULT_MAX_SIZE`, ``--max-size``) or to more than the free disk space, and members compressed more than
:data:`MAX_COMPRESSION_RATIO`:1 (zip bombs) -- both judged from the zip's directory before anything is unpacked,
and counted again while unpacking, since a zip can lie; members that do not unpack to their listed size and
checksum (damaged). Nothing is written into the results folder until every check has passed; a workspace that
cannot be written is an error naming the folder.
A stop request (:class:`~AutoSegNetLib.utils.stop.StopRequest`) is honoured before unpacking and between the
unpacked files: the staging folder is removed and :class:`~AutoSegNetLib.utils.stop.StopRequested` raised, so a
model is installed completely or not at all.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import shutil
import stat
import tempfile
import zipfile
import zlib
from pathlib import Path, PurePosixPath

from AutoSegNetLib import __version__
from AutoSegNetLib.dataset.dataset_json import DatasetJson
from AutoSegNetLib.errors import AutoSegNetError
from AutoSegNetLib.layout import (
    CHECKPOINT_VERSION,
    DATASET_JSON_FILE,
    PLANS_FILE,
    REQUIRED_MODEL_FILES,
    checkpoint_member,
    checkpoint_path,
    parse_model_folder_name,
)
from AutoSegNetLib.models.manifest import MANIFEST_NAME, Manifest
from AutoSegNetLib.models.sizes import DEFAULT_MAX_SIZE, format_size, parse_size  # noqa: F401 - re-exported
from AutoSegNetLib.planning.plans import PLANS_VERSION, Plans
from AutoSegNetLib.utils.checkpoint_io import read_checkpoint
from AutoSegNetLib.utils.os_errors import describe_os_error
from AutoSegNetLib.utils.stop import StopRequest
from AutoSegNetLib.workspace import Workspace

log = logging.getLogger(__name__)

_DATASET_NAME = re.compile(r"^Dataset\d{3}_[A-Za-z0-9_\-]+$")
_CHUNK = 1 << 20

#: Members compressed more than this are refused: checkpoints (random-looking floats) compress about 1.1:1 and
#: JSON about 5-10:1, while a zip bomb's zeros compress 1000:1.
MAX_COMPRESSION_RATIO = 100
#: Only members unpacking to more than this many bytes are judged by their ratio (small JSON files may compress
#: well and cannot fill a disk).
RATIO_CHECKED_ABOVE = 4 * 10**6


def install_model(zip_path: str | Path, workspace: Workspace, force: bool = False,
                  stop: StopRequest | None = None, max_size: int = DEFAULT_MAX_SIZE) -> list[Path]:
    """Install the model folders of ``zip_path`` into ``workspace.results/<dataset>/``; returns their paths.

    ``max_size``: the most bytes the zip may unpack to (see :data:`DEFAULT_MAX_SIZE`).
    """
    stop = stop or StopRequest()
    stop.raise_if_requested("nothing was installed")
    zip_path = Path(zip_path)
    if not zip_path.is_file() or not zipfile.is_zipfile(zip_path):
        raise AutoSegNetError(f"{zip_path} is not a zip file; export models with `autosegnet export-model`.")
    with zipfile.ZipFile(zip_path) as archive:
        members = checked_members(archive, zip_path)
        manifest = read_manifest(archive, members, zip_path)
        check_compatible(manifest, zip_path)
        check_listing(manifest, members, zip_path)
        total = check_sizes(members, manifest, zip_path, max_size)
        target_root = workspace.results / manifest.dataset_name
        targets = [target_root / entry.folder for entry in manifest.models]
        existing = [t for t in targets if t.exists()]
        if existing and not force:
            raise AutoSegNetError(
                f"{', '.join(str(t) for t in existing)} already exist(s). Use --force to replace the installed model."
            )
        check_free_space(total, target_root, zip_path)
        staging = staging_folder(target_root)
        try:
            extract_verified(archive, manifest, members, staging, zip_path, stop, max_size)
            check_contents(manifest, staging, zip_path)
            stop.raise_if_requested("nothing was installed")
            _move_into_place(manifest, staging, targets)  # from here on, no stop: all or nothing
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    log.info("Installed %s into %s", ", ".join(e.folder for e in manifest.models), target_root)
    return targets


def check_sizes(members: dict[str, zipfile.ZipInfo], manifest: Manifest, source: Path, max_size: int) -> int:
    """Refuse, from the zip's directory, a zip unpacking to more than ``max_size`` bytes or holding a member
    compressed more than :data:`MAX_COMPRESSION_RATIO`:1; returns the unpacked size in bytes."""
    return check_member_sizes(members, list(manifest.files), source, max_size)


def check_member_sizes(members: dict[str, zipfile.ZipInfo], names: list[str], source: Path, max_size: int) -> int:
    """:func:`check_sizes` for the members ``names`` (those that will be unpacked); returns their size in bytes."""
    for name in names:
        info = members[name]
        ratio = info.file_size / max(info.compress_size, 1)
        if info.file_size > RATIO_CHECKED_ABOVE and ratio > MAX_COMPRESSION_RATIO:
            raise _bomb(source, name, info.file_size, ratio)
    total = sum(members[name].file_size for name in names)
    if total > max_size:
        raise AutoSegNetError(
            f"{source} unpacks to {format_size(total)}, more than --max-size {format_size(max_size)}; nothing was "
            f"installed. If you trust this zip, install it with a larger --max-size (e.g. --max-size "
            f"{format_size(total * 11 // 10)})."
        )
    return total


def check_free_space(total: int, folder: Path, source: Path) -> None:
    """Refuse a zip that unpacks to more bytes than the disk holding ``folder`` (or its nearest parent) has free."""
    existing = next((p for p in (folder, *folder.parents) if p.exists()), Path("."))
    free = shutil.disk_usage(existing).free
    if total > free:
        raise AutoSegNetError(
            f"{source} unpacks to {format_size(total)} but {existing} has only {format_size(free)} free; free some "
            "space or install into another workspace (--workspace)."
        )


def _bomb(source: Path, name: str, size: int, ratio: float) -> AutoSegNetError:
    return AutoSegNetError(
        f"{source}: {name} unpacks to {format_size(size)} but is compressed {ratio:.0f}:1, more than "
        f"{MAX_COMPRESSION_RATIO}:1 (model files compress about 1.1:1): this looks like a zip bomb; nothing was "
        "installed."
    )


def _cannot_install(folder: Path, error: OSError) -> AutoSegNetError:
    return AutoSegNetError(
        f"cannot install into {folder}: {describe_os_error(error)} ({error.filename or folder}); nothing was "
        "installed. Choose a workspace you can write to (--workspace or $AUTOSEGNET_HOME), or fix the folder's "
        "permissions or free space."
    )


def staging_folder(target_root: Path) -> Path:
    """A new hidden folder in ``target_root`` to unpack into (same file system: moving it in place is a rename)."""
    try:
        target_root.mkdir(parents=True, exist_ok=True)
        return Path(tempfile.mkdtemp(prefix=".install-", dir=target_root))
    except OSError as error:
        raise _cannot_install(target_root, error) from None


def _move_into_place(manifest: Manifest, staging: Path, targets: list[Path]) -> None:
    move_folders_into_place([(staging / entry.folder, target) for entry, target in zip(manifest.models, targets)])


def move_folders_into_place(moves: list[tuple[Path, Path]]) -> None:
    """Rename each staged folder onto its target (same file system), replacing a target that exists."""
    try:
        for staged, target in moves:
            if target.exists():
                shutil.rmtree(target)
            staged.rename(target)
    except OSError as error:
        raise _cannot_install(moves[0][1].parent, error) from None


def checked_members(archive: zipfile.ZipFile, source: Path) -> dict[str, zipfile.ZipInfo]:
    """The zip's file entries by name, after refusing unsafe names, links and duplicates."""
    members: dict[str, zipfile.ZipInfo] = {}
    for info in archive.infolist():
        name = info.filename
        if name.endswith("/"):
            safe_relative_path(name.rstrip("/"), source)
            continue
        safe_relative_path(name, source)
        mode = info.external_attr >> 16
        if stat.S_ISLNK(mode):
            raise AutoSegNetError(f"{source}: entry {name!r} is a symbolic link; model zips hold only plain files.")
        if name in members:
            raise AutoSegNetError(f"{source}: entry {name!r} appears twice; the zip has been tampered with.")
        members[name] = info
    return members


def safe_relative_path(name: str, source: Path) -> PurePosixPath:
    """``name`` as a relative POSIX path inside the target folder, or an error for anything that could escape."""
    bad = (
        not name or name.startswith(("/", "\\")) or "\\" in name or "\x00" in name or re.match(r"^[A-Za-z]:", name)
    )
    path = PurePosixPath(name)
    if bad or any(part in ("", ".", "..") for part in name.split("/")) or path.is_absolute():
        raise AutoSegNetError(
            f"{source}: entry {name!r} has an unsafe path (absolute, '..', drive letter or backslash) that could "
            "write outside the model folder; refusing to install this zip."
        )
    return path


def read_manifest(archive: zipfile.ZipFile, members: dict[str, zipfile.ZipInfo], source: Path) -> Manifest:
    if MANIFEST_NAME not in members:
        raise AutoSegNetError(f"{source} has no {MANIFEST_NAME}; it was not made by `autosegnet export-model`.")
    if members[MANIFEST_NAME].file_size > 16 * _CHUNK:
        raise AutoSegNetError(f"{source}: {MANIFEST_NAME} is implausibly large.")
    try:
        data = json.loads(archive.read(MANIFEST_NAME))
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise AutoSegNetError(f"{source}: {MANIFEST_NAME} is not valid JSON ({error}).") from None
    except (zipfile.BadZipFile, zlib.error, EOFError) as error:
        raise AutoSegNetError(f"{source}: {MANIFEST_NAME} cannot be unpacked ({error}); the zip is damaged.") from None
    return Manifest.from_dict(data, f"{source}:{MANIFEST_NAME}")


def check_compatible(manifest: Manifest, source: Path) -> None:
    """Refuse manifests from newer engines or with plans/checkpoint versions this engine cannot read."""
    if _major(manifest.engine_version) > _major(__version__):
        raise AutoSegNetError(
            f"{source} was made by AutoSegNet {manifest.engine_version}; this is {__version__}. Update AutoSegNet."
        )
    if manifest.plans_version != PLANS_VERSION or manifest.checkpoint_version != CHECKPOINT_VERSION:
        raise AutoSegNetError(
            f"{source}: plans version {manifest.plans_version} / checkpoint version {manifest.checkpoint_version} "
            f"are not supported (this engine reads {PLANS_VERSION} / {CHECKPOINT_VERSION})."
        )
    if not _DATASET_NAME.match(manifest.dataset_name):
        raise AutoSegNetError(f"{source}: dataset name {manifest.dataset_name!r} is not DatasetXXX_Name.")
    if not manifest.models:
        raise AutoSegNetError(f"{source}: the manifest lists no model.")
    for entry in manifest.models:
        if "/" in entry.folder or parse_model_folder_name(entry.folder) is None:
            raise AutoSegNetError(
                f"{source}: model folder {entry.folder!r} is not named AutoSegNet__<plans>__<configuration>."
            )


def check_listing(manifest: Manifest, members: dict[str, zipfile.ZipInfo], source: Path) -> None:
    """The zip holds exactly the manifest's files (plus the manifest), each model its required files."""
    in_zip = set(members) - {MANIFEST_NAME}
    listed = set(manifest.files)
    for name in listed:
        safe_relative_path(name, source)
    missing, extra = sorted(listed - in_zip), sorted(in_zip - listed)
    if missing:
        raise AutoSegNetError(f"{source} is incomplete: files listed in the manifest are missing: {missing[:5]}.")
    if extra:
        raise AutoSegNetError(f"{source} holds files its manifest does not list (tampered?): {extra[:5]}.")
    folders = {entry.folder for entry in manifest.models}
    outside = sorted(n for n in listed if n.split("/")[0] not in folders)
    if outside:
        raise AutoSegNetError(f"{source}: files outside the listed model folders: {outside[:5]}.")
    for entry in manifest.models:
        try:
            required = [f"{entry.folder}/{name}" for name in REQUIRED_MODEL_FILES] + [
                f"{entry.folder}/{checkpoint_member(fold, entry.checkpoint)}" for fold in entry.folds
            ]
        except AutoSegNetError as error:  # a fold or checkpoint kind we never write
            raise AutoSegNetError(f"{source}: model {entry.folder}: {error}") from None
        absent = [r for r in required if r not in listed]
        if absent or not entry.folds:
            raise AutoSegNetError(f"{source}: model {entry.folder} lacks {absent or 'any fold'}.")
    for name, info in manifest.files.items():
        if members[name].file_size != info["size"]:
            size = members[name].file_size
            raise AutoSegNetError(f"{source}: {name} is {size} bytes, the manifest says {info['size']}.")


def extract_verified(
    archive: zipfile.ZipFile, manifest: Manifest, members: dict[str, zipfile.ZipInfo], staging: Path, source: Path,
    stop: StopRequest | None = None, max_size: int = DEFAULT_MAX_SIZE,
) -> None:
    """Extract every listed file into ``staging`` (see :func:`extract_members`), checking each size and sha256
    against the manifest."""
    extracted = extract_members(archive, members, list(manifest.files), staging, source, stop, max_size)
    for name, info in manifest.files.items():
        if extracted[name] != (info["size"], info["sha256"]):
            raise AutoSegNetError(
                f"{source}: {name} does not match its sha256 in the manifest; the zip is damaged or was tampered with."
            )


def extract_members(
    archive: zipfile.ZipFile, members: dict[str, zipfile.ZipInfo], names: list[str], staging: Path, source: Path,
    stop: StopRequest | None = None, max_size: int = DEFAULT_MAX_SIZE,
) -> dict[str, tuple[int, str]]:
    """Extract the members ``names`` (checked by :func:`checked_members`) into ``staging``, never more bytes than
    the zip's directory lists (per file) or than ``max_size`` (in all), nor a member unpacking like a bomb; a stop
    request raises :class:`~AutoSegNetLib.utils.stop.StopRequested` between files. Returns
    ``{name: (bytes, sha256)}``."""
    total, extracted = 0, {}
    for name in names:
        if stop is not None:
            stop.raise_if_requested("nothing was installed")
        target = staging.joinpath(*PurePosixPath(name).parts)
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            extracted[name] = _extract_member(archive, members[name], target, source, max_size - total)
        except (zipfile.BadZipFile, zlib.error, EOFError) as error:
            raise AutoSegNetError(
                f"{source}: {name} cannot be unpacked ({error}); the zip is damaged or was tampered with."
            ) from None
        except OSError as error:
            raise _cannot_install(staging.parent, error) from None
        total += extracted[name][0]
    return extracted


def _extract_member(archive: zipfile.ZipFile, info: zipfile.ZipInfo, target: Path, source: Path,
                    budget: int) -> tuple[int, str]:
    """Copy one member to ``target``, counting bytes: refused past its listed size, past ``budget`` (what is left of
    ``--max-size``) or past :data:`MAX_COMPRESSION_RATIO` times its compressed size. Returns ``(bytes, sha256)``."""
    digest = hashlib.sha256()
    written = 0
    with archive.open(info) as src, open(target, "wb") as dst:
        while block := src.read(_CHUNK):
            written += len(block)
            if written > info.file_size:
                raise AutoSegNetError(
                    f"{source}: {info.filename} unpacks to more bytes than the zip lists; nothing was installed."
                )
            if written > budget:
                raise AutoSegNetError(f"{source} unpacks to more than --max-size; nothing was installed.")
            if written > RATIO_CHECKED_ABOVE and written > MAX_COMPRESSION_RATIO * max(info.compress_size, 1):
                raise _bomb(source, info.filename, written, written / max(info.compress_size, 1))
            digest.update(block)
            dst.write(block)
    return written, digest.hexdigest()


def check_contents(manifest: Manifest, staging: Path, source: Path) -> None:
    """Plans, dataset.json and checkpoints parse; checkpoints hold only plain data and tensors."""
    for entry in manifest.models:
        folder = staging / entry.folder
        plans = Plans.load(folder / PLANS_FILE)
        plans.configuration(entry.configuration)
        DatasetJson.load(folder / DATASET_JSON_FILE)
        for fold in entry.folds:
            path = checkpoint_path(folder, fold, entry.checkpoint)
            try:
                read_checkpoint(path, required=("network_weights",))  # weights_only: refuses pickled code
            except AutoSegNetError as error:
                raise AutoSegNetError(f"{source}: {entry.folder}/{path.parent.name}/{path.name}: {error}") from None


def _major(version: str) -> int:
    try:
        return int(str(version).split(".")[0])
    except ValueError:
        raise AutoSegNetError(f"Engine version {version!r} in the manifest is not a version number.") from None
