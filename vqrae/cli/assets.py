"""Asset commands: ``vqrae assets list`` and ``vqrae assets fetch NAME...``."""

from __future__ import annotations

import argparse

from vqrae.cli.args import add_function_command, command_group
from vqrae.cli.common import print_error


def list_() -> int:
    """List the pretrained assets, where each comes from, and whether it is here already."""
    from vqrae import assets

    for spec in assets.list_assets():
        sources = []
        if spec.hub_repo:
            sources.append(f"hub:{spec.hub_repo}")
        if spec.offline is not None:
            sources.append(f"offline:{spec.offline.package}=={spec.offline.version}")
        if spec.shipped is not None:
            sources.insert(0, "shipped")
        state = "here" if assets.is_cached(spec.name) else "-"
        print(f"{spec.name:26s} {state:7s} {', '.join(sources):60s} {spec.description}")
    print(f"cache: {assets.cache_dir()}")
    return 0


def fetch(names: list[str], force: bool = False) -> int:
    """Fetch (and convert) pretrained assets into the cache.

    Args:
        names: asset names (see `vqrae assets list`), or "all-offline" for every asset with an
            offline source.
        force: fetch again even when cached.
    """
    from vqrae import assets

    if names == ["all-offline"]:
        names = [s.name for s in assets.list_assets() if s.offline is not None]
    failures = 0
    for name in names:
        try:
            path = assets.fetch(name, force=True) if force else assets.resolve(name)
        except assets.AssetError as exc:
            failures += 1
            print_error(str(exc))
        else:
            print(f"{name}: {path}")
    return 1 if failures else 0


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``assets`` group."""
    actions = command_group(subparsers, "assets", "list or fetch pretrained weights")
    add_function_command(actions, "list", list_)
    add_function_command(actions, "fetch", fetch)
