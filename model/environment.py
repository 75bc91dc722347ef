"""The Python environment a logged model carries, so `env_manager="uv"`/`"virtualenv"` (`spark_udf`,
`mlflow models serve/predict`) can rebuild it wherever the package index is reachable.

The model's `requirements.txt` names the leadscore wheel logged inside the model (MLflow `code_paths`:
`code/leadscore-<version>-<hash>/leadscore-<version>-py3-none-any.whl`, a path relative to the model
directory, which is where MLflow runs `pip`/`uv pip install -r`), then each runtime dependency of the
package pinned at the version installed here. The folder's hash names the code: MLflow names a rebuilt
environment after its requirements' text, so two models of different code under one version number must not
share one.

Where the wheel comes from (`package_wheel`):
- an editable install (a checkout, PEP 610 `direct_url.json`): the wheel is built from the checkout's
  package sources, copied to a scratch folder first (nothing is written into the checkout), with `uv build`
  (else `pip wheel`), and cached by version and sources' SHA-256, so only the first training after a change
  pays for the build (about 1 s);
- an installed wheel: the installed files are packed back into the wheel they came from, each checked against
  the SHA-256 its `RECORD` lists (a changed installation is refused), cached by the `RECORD`'s hash;
- when neither works (no builder, an installation changed by hand): the requirement `leadscore==<version>`,
  with a warning, as before; such a model rebuilds its environment only where that version is on the index.
"""

from __future__ import annotations

import base64
import email
import hashlib
import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import tomllib
import zipfile
from collections.abc import Callable
from importlib.metadata import Distribution, PackageNotFoundError, distributions, version
from pathlib import Path

from packaging.requirements import Requirement

log = logging.getLogger(__name__)
PACKAGE = "leadscore"
# what a built wheel's dist-info holds (with its licenses/ folder); an installer adds its own files beside
# them (INSTALLER, REQUESTED, direct_url.json: PEP 376/610/627; uv_cache.json ...), which are left out
_WHEEL_INFO_FILES = {"METADATA", "WHEEL", "entry_points.txt", "top_level.txt"}
# a fixed time in the packed wheel's entries: the same files, the same bytes
_ZIP_TIME = (1980, 1, 1, 0, 0, 0)


class WheelError(RuntimeError):
    """The package's wheel cannot be built or packed here."""


def model_environment() -> tuple[list[str], list[str]]:
    """(pip_requirements, code_paths) for `mlflow.pyfunc.log_model`: the package's wheel, carried in the
    model, and its runtime dependencies pinned; else `leadscore==<version>` with a warning."""
    pins = runtime_pins()
    try:
        wheel = package_wheel()
    except (WheelError, OSError, subprocess.SubprocessError, PackageNotFoundError) as e:
        log.warning(
            "the model carries no leadscore wheel (%s): its requirements name %s==%s, so "
            'env_manager="uv"/"virtualenv" can rebuild its environment only where that version is on the '
            'package index; env_manager="local" needs leadscore installed',
            e,
            PACKAGE,
            _version(),
        )
        return [f"{PACKAGE}=={_version()}", *pins], []
    folder = wheel.parent
    return [f"code/{folder.name}/{wheel.name}", *pins], [str(folder)]


def runtime_pins() -> list[str]:
    """Each dependency the installed package declares (extras left out), pinned at its installed version,
    its own extras kept (`uvicorn[standard]==...`); none when leadscore is not installed."""
    try:
        declared = installed().requires or []
    except PackageNotFoundError:
        return []
    pins = []
    for spec in declared:
        req = Requirement(spec)
        if req.marker is not None and not req.marker.evaluate({"extra": ""}):
            continue  # an optional extra's dependency, or not for this platform
        extras = f"[{','.join(sorted(req.extras))}]" if req.extras else ""
        try:
            pins.append(f"{req.name}{extras}=={version(req.name)}")
        except PackageNotFoundError:  # declared but not installed here: left to the resolver
            pins.append(str(req))
    return pins


def package_wheel(cache: Path | None = None) -> Path:
    """The installed package as a wheel, in a cache folder of its own (named for version and content)."""
    dist = installed()
    cache = cache or cache_dir()
    source = editable_source(dist)
    if source is not None:
        here = Path(__file__).resolve()
        if not any(here.is_relative_to((source / d).resolve()) for d in _package_folders(source)):
            raise WheelError(f"the running leadscore ({here}) is not the editable install's source {source}")
        files = source_files(source)
        key = _sha256_of_files(source, files)
        return _cached(cache, dist.version, key, lambda out: build_wheel(source, files, out))
    record = dist.read_text("RECORD") or ""
    key = hashlib.sha256(record.encode()).hexdigest()
    return _cached(cache, dist.version, key, lambda out: pack_installed(dist, out))


def installed() -> Distribution:
    """The installed distribution: the one an installer recorded (a stray `leadscore.egg-info` in a checkout
    on `sys.path` has no RECORD and is passed over)."""
    found = [d for d in distributions(name=PACKAGE) if d.read_text("RECORD")]
    if not found:
        raise PackageNotFoundError(PACKAGE)
    return found[0]


def cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / PACKAGE / "wheels"


def editable_source(dist: Distribution) -> Path | None:
    """The checkout an editable install points at (PEP 610), if it still holds the project."""
    text = dist.read_text("direct_url.json")
    if not text:
        return None
    direct = json.loads(text)
    url = direct.get("url", "")
    if not (direct.get("dir_info") or {}).get("editable") or not url.startswith("file://"):
        return None
    root = Path(url.removeprefix("file://"))
    return root if (root / "pyproject.toml").is_file() else None


def source_files(root: Path) -> list[Path]:
    """What the wheel is built from: pyproject.toml, its readme, and every file of the package folders
    (`[tool.setuptools.package-dir]`), caches left out; paths relative to `root`."""
    readme = tomllib.loads((root / "pyproject.toml").read_text()).get("project", {}).get("readme")
    files = [Path("pyproject.toml"), *([Path(readme)] if isinstance(readme, str) else [])]
    for folder in _package_folders(root):
        for path in sorted((root / folder).rglob("*")):
            rel = path.relative_to(root)
            if path.is_file() and "__pycache__" not in rel.parts and path.suffix != ".pyc":
                files.append(rel)
    return files


def _package_folders(root: Path) -> list[str]:
    project = tomllib.loads((root / "pyproject.toml").read_text())
    folders = set((project.get("tool", {}).get("setuptools", {}).get("package-dir") or {}).values())
    return sorted(folders | {PACKAGE})


def build_wheel(root: Path, files: list[Path], out: Path) -> Path:
    """Build the wheel from a copy of `files` (the build backend writes build/ and *.egg-info next to the
    sources: not into the user's checkout)."""
    with tempfile.TemporaryDirectory(prefix="leadscore-wheel-src-") as tmp:
        for rel in files:
            (Path(tmp) / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(root / rel, Path(tmp) / rel)
        uv = shutil.which("uv") or shutil.which("uv", path=str(Path(sys.executable).parent))
        if uv:
            cmd = [uv, "build", "--wheel", "--quiet", "--out-dir", str(out), tmp]
        else:
            cmd = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "--wheel-dir", str(out), tmp]
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
        if done.returncode != 0:
            raise WheelError(f"building the wheel failed ({' '.join(cmd[:2])}): {done.stderr.strip()[-500:]}")
    wheels = list(out.glob(f"{PACKAGE}-*.whl"))
    if len(wheels) != 1:
        raise WheelError(f"building the wheel left {len(wheels)} wheels in {out}")
    return wheels[0]


def pack_installed(dist: Distribution, out: Path) -> Path:
    """The wheel an installed distribution came from, packed again from its files: every file its RECORD
    lists inside site-packages (scripts outside it are made again from entry_points.txt at install), byte
    for byte, each checked against the RECORD's SHA-256; a fresh RECORD."""
    tags = email.message_from_string(dist.read_text("WHEEL") or "").get_all("Tag") or []
    tag = next((t.strip() for t in tags if t.count("-") == 2), None)
    if tag is None:
        raise WheelError(f"the installed {PACKAGE} has no WHEEL tag")
    name = dist.metadata["Name"].replace("-", "_")
    info = f"{name}-{dist.version}.dist-info"
    wheel = out / f"{name}-{dist.version}-{tag}.whl"
    record = []
    with zipfile.ZipFile(wheel, "w", zipfile.ZIP_DEFLATED) as z:
        for f in sorted(dist.files or [], key=str):
            parts = f.parts
            # outside site-packages (scripts, data files): RECORD names them by an absolute path or one
            # starting with '..' (PEP 376); they are made again at install, never carried in the wheel
            if f.is_absolute() or parts[0] == "..":
                continue
            if ".." in parts:  # climbs out from inside: a wheel entry named so would escape at install
                raise WheelError(f"the installed RECORD names {f}, a path that leaves its folder")
            if "__pycache__" in parts or f.suffix == ".pyc":
                continue
            if parts[0] == info and f.name not in _WHEEL_INFO_FILES and parts[1] != "licenses":
                continue
            data = Path(str(dist.locate_file(f))).read_bytes()
            digest = _record_hash(data)
            if f.hash is None or f.hash.mode != "sha256" or f.hash.value != digest:
                raise WheelError(f"the installed {f} does not match its RECORD: the installation was changed")
            z.writestr(zipfile.ZipInfo(str(f), _ZIP_TIME), data)
            record.append(f"{f},sha256={digest},{len(data)}")
        record.append(f"{info}/RECORD,,")
        z.writestr(zipfile.ZipInfo(f"{info}/RECORD", _ZIP_TIME), "\n".join(record) + "\n")
    return wheel


def _cached(cache: Path, version: str, key: str, make: Callable[[Path], Path]) -> Path:
    """The wheel in `cache/leadscore-<version>-<key[:16]>/`, made by `make(folder)` if not there yet.
    Made in a scratch folder and renamed into place: concurrent trainings never see half a wheel."""
    folder = cache / f"{PACKAGE}-{version}-{key[:16]}"
    wheels = list(folder.glob("*.whl"))
    if len(wheels) == 1:
        return wheels[0]
    cache.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix=".making-", dir=cache))
    try:
        made = make(scratch)
        try:
            scratch.rename(folder)
        except OSError:  # another process put it there first: the same content
            shutil.rmtree(scratch, ignore_errors=True)
            if not folder.is_dir():
                raise
            return next(folder.glob("*.whl"))
        return folder / Path(made).name
    except BaseException:
        shutil.rmtree(scratch, ignore_errors=True)
        raise


def _sha256_of_files(root: Path, files: list[Path]) -> str:
    h = hashlib.sha256()
    for rel in files:
        data = (root / rel).read_bytes()
        h.update(f"{rel.as_posix()}\0{len(data)}\0".encode())
        h.update(data)
    return h.hexdigest()


def _record_hash(data: bytes) -> str:
    return base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()


def _version() -> str:
    try:
        return version(PACKAGE)
    except PackageNotFoundError:
        return "0+unknown"
