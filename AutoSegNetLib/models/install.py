"""``install-model``: check a model zip thoroughly, then unpack it into the workspace's results folder.

Refused, with an error that says why: files that are not zips; entries whose path is absolute, contains
``..``, a drive letter or a backslash, is a link, or appears twice; a missing or malformed manifest, or one from
a newer engine / plans / checkpoint version; files missing from the zip or present without being listed; sizes
or sha256 that differ from the manifest; a manifest that lists a model without its plans, dataset.json or
checkpoints; checkpoints that cannot be read as plain tensors (``weights_only``); model folders that exist
already (unless ``force``). Nothing is written into the results folder until every check has passed.
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
from pathlib import Path, PurePosixPath

import torch

from AutoSegNetLib import __version__
from AutoSegNetLib.dataset.dataset_json import DatasetJson
from AutoSegNetLib.errors import AutoSegNetError
from AutoSegNetLib.inference.model_folder import CHECKPOINT_FORMAT, fold_folder_name, parse_model_folder_name
from AutoSegNetLib.models.manifest import CHECKPOINT_VERSION, MANIFEST_NAME, Manifest
from AutoSegNetLib.planning.plans import PLANS_VERSION, Plans
from AutoSegNetLib.workspace import Workspace

log = logging.getLogger(__name__)

_DATASET_NAME = re.compile(r"^Dataset\d{3}_[A-Za-z0-9_\-]+$")
_CHUNK = 1 << 20


def install_model(zip_path: str | Path, workspace: Workspace, force: bool = False) -> list[Path]:
    """Install the model folders of ``zip_path`` into ``workspace.results/<dataset>/``; returns their paths."""
    zip_path = Path(zip_path)
    if not zip_path.is_file() or not zipfile.is_zipfile(zip_path):
        raise AutoSegNetError(f"{zip_path} is not a zip file; export models with `autosegnet export-model`.")
    with zipfile.ZipFile(zip_path) as archive:
        members = checked_members(archive, zip_path)
        manifest = read_manifest(archive, members, zip_path)
        check_compatible(manifest, zip_path)
        check_listing(manifest, members, zip_path)
        target_root = workspace.results / manifest.dataset_name
        targets = [target_root / entry.folder for entry in manifest.models]
        existing = [t for t in targets if t.exists()]
        if existing and not force:
            raise AutoSegNetError(
                f"{', '.join(str(t) for t in existing)} already exist(s). Use --force to replace the installed model."
            )
        target_root.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=".install-", dir=target_root))
        try:
            extract_verified(archive, manifest, members, staging, zip_path)
            check_contents(manifest, staging, zip_path)
            for entry, target in zip(manifest.models, targets):
                if target.exists():
                    shutil.rmtree(target)
                (staging / entry.folder).rename(target)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    log.info("Installed %s into %s", ", ".join(e.folder for e in manifest.models), target_root)
    return targets


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
        required = [f"{entry.folder}/plans.json", f"{entry.folder}/dataset.json"] + [
            f"{entry.folder}/{fold_folder_name(fold)}/checkpoint_{entry.checkpoint}.pth" for fold in entry.folds
        ]
        absent = [r for r in required if r not in listed]
        if absent or not entry.folds:
            raise AutoSegNetError(f"{source}: model {entry.folder} lacks {absent or 'any fold'}.")
    for name, info in manifest.files.items():
        if members[name].file_size != info["size"]:
            size = members[name].file_size
            raise AutoSegNetError(f"{source}: {name} is {size} bytes, the manifest says {info['size']}.")


def extract_verified(
    archive: zipfile.ZipFile, manifest: Manifest, members: dict[str, zipfile.ZipInfo], staging: Path, source: Path
) -> None:
    """Extract every listed file into ``staging``, never more bytes than listed, checking each sha256."""
    for name, info in manifest.files.items():
        target = staging.joinpath(*PurePosixPath(name).parts)
        target.parent.mkdir(parents=True, exist_ok=True)
        digest = hashlib.sha256()
        written = 0
        with archive.open(members[name]) as src, open(target, "wb") as dst:
            while block := src.read(_CHUNK):
                written += len(block)
                if written > info["size"]:
                    raise AutoSegNetError(f"{source}: {name} unpacks to more bytes than the manifest lists.")
                digest.update(block)
                dst.write(block)
        if written != info["size"] or digest.hexdigest() != info["sha256"]:
            raise AutoSegNetError(
                f"{source}: {name} does not match its sha256 in the manifest; the zip is damaged or was tampered with."
            )


def check_contents(manifest: Manifest, staging: Path, source: Path) -> None:
    """Plans, dataset.json and checkpoints parse; checkpoints hold only plain data and tensors."""
    for entry in manifest.models:
        folder = staging / entry.folder
        plans = Plans.load(folder / "plans.json")
        plans.configuration(entry.configuration)
        DatasetJson.load(folder / "dataset.json")
        for fold in entry.folds:
            path = folder / fold_folder_name(fold) / f"checkpoint_{entry.checkpoint}.pth"
            try:
                data = torch.load(path, map_location="cpu", weights_only=True)
            except Exception as error:
                raise AutoSegNetError(
                    f"{source}: {entry.folder}/{path.parent.name}/{path.name} holds more than weights and plain data "
                    f"and is not loaded for safety ({type(error).__name__})."
                ) from None
            if not isinstance(data, dict) or data.get("format") != CHECKPOINT_FORMAT or "network_weights" not in data:
                raise AutoSegNetError(f"{source}: {entry.folder}/{path.parent.name}/{path.name} is not a checkpoint.")


def _major(version: str) -> int:
    try:
        return int(str(version).split(".")[0])
    except ValueError:
        raise AutoSegNetError(f"Engine version {version!r} in the manifest is not a version number.") from None
