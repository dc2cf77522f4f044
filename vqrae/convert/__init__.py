"""Offline weight converters: PyPI-carried files -> the project's safetensors layouts.

Each module exposes ``convert(members, out_dir)``, the converter that :mod:`vqrae.assets`
runs on the unpacked archive members; it writes ``model.safetensors`` and verifies it against
the original file (raising on mismatch). Modules are imported lazily by the asset registry.
"""
