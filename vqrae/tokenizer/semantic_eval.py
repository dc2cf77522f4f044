"""Semantic retention of a tokenizer's encoder, and the paper's Figure-4 clustering analysis.

Over a labelled image set (labels from folders or ImageNet-style file names, see
:mod:`vqrae.data.sources`), streamed once:

* **cosine similarity** between the model's continuous features Z_I (B, N, d) and a reference
  encoder's (by default the model's encoder as originally pretrained: what stage-2
  self-distillation tries to preserve), token by token, averaged per image and then over
  images. Skipped, with a note, when there is no reference or the shapes differ;
* **k-NN top-1 accuracy**, leave-one-out, cosine similarity on mean-pooled features, for the
  model, for the reference, and for the per-image bags of codes;
* **k-means purity** (the Figure-4 analysis) of (a) the mean-pooled continuous features and
  (b) the per-image code histograms (bag of codes, normalised to frequencies), both
  L2-normalised first (spherical k-means), with thumbnails of the largest clusters.

When some images have labels and others not, the label-based numbers and the clustering use the
labelled images only. One image per class (the 1000-image ImageNet sample) leaves k-NN
undefined: ``label_groups="restricted-imagenet"`` maps synsets to the nine coarse classes of
Restricted ImageNet (Tsipras et al., 2019: dog, cat, frog, turtle, bird, primate, fish, crab,
insect; ImageNet class-index ranges, i.e. ranges of sorted synset ids) and leaves the other
classes unlabelled.

Memory holds per image a d-dimensional mean feature (twice with a reference) and its N code
indices; images are re-read only for the few thumbnails.
"""

from __future__ import annotations

import json
import os
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from vqrae.data.images import center_crop_resize
from vqrae.data.sources import ImageSource, SourceRecord, iter_batches
from vqrae.eval.recon import json_safe, resolve_size
from vqrae.eval.report import esc, fmt, render_page, save_png, write_text
from vqrae.eval.semantics import cluster_purity, feature_cosine_similarity, kmeans, knn_accuracy
from vqrae.tokenizer.encoders import get_encoder_spec, list_encoders
from vqrae.tokenizer.model import VQRAE, load_pretrained_encoder, trained_checkpoints
from vqrae.utils.files import atomic_write
from vqrae.utils.runtime import autocast, default_precision

__all__ = [
    "LABEL_GROUPS",
    "RESTRICTED_IMAGENET",
    "SemanticResult",
    "build_reference",
    "evaluate_semantics",
    "restricted_imagenet_label",
    "write_semantics",
]

# Restricted ImageNet (Tsipras et al., 2019): class-index ranges, given by their first and last
# synset ids (ImageNet class indices follow the sorted synset ids).
RESTRICTED_IMAGENET: tuple[tuple[str, str, str], ...] = (
    ("dog", "n02085620", "n02113978"),  # 151-268
    ("cat", "n02123045", "n02124075"),  # 281-285
    ("frog", "n01641577", "n01644900"),  # 30-32
    ("turtle", "n01664065", "n01669191"),  # 33-37
    ("bird", "n01795545", "n01860187"),  # 80-100
    ("primate", "n02480495", "n02494079"),  # 365-382
    ("fish", "n02514041", "n02655020"),  # 389-397
    ("crab", "n01978287", "n01981276"),  # 118-121
    ("insect", "n02165105", "n02268443"),  # 300-319
)


def restricted_imagenet_label(label: str | None) -> str | None:
    """The Restricted-ImageNet class of a synset id (``None`` outside the nine classes)."""
    if label is None:
        return None
    for name, first, last in RESTRICTED_IMAGENET:
        if first <= label <= last:
            return name
    return None


LABEL_GROUPS: dict[str, Callable[[str | None], str | None]] = {
    "none": lambda label: label,
    "restricted-imagenet": restricted_imagenet_label,
}


@dataclass
class SemanticResult:
    """Output of :func:`evaluate_semantics`.

    Attributes:
        metrics: JSON-ready numbers (see :func:`evaluate_semantics`).
        names, labels: per evaluated image, in source order.
        indices: the images' positions in the source (for re-reading thumbnails).
        clusterings: ``{"features" | "codes": (assignments (M,), centroid distance (M,))}`` over
            the analysed images (``analysed`` gives their rows).
        analysed: rows of the images that the label-based analysis used.
    """

    metrics: dict[str, Any]
    names: list[str]
    labels: list[str | None]
    indices: list[int]
    clusterings: dict[str, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)
    analysed: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))


# ---------------------------------------------------------------------------- reference
def _pretrained_encoder(encoder_name: str, model: nn.Module) -> nn.Module:
    """The named encoder with its pretrained weights, configured like ``model``'s encoder."""
    import dataclasses

    if get_encoder_spec(encoder_name).asset is None:
        raise ValueError(f"encoder {encoder_name!r} has no pretrained weights")
    return load_pretrained_encoder(dataclasses.replace(model.config, encoder=encoder_name))


def build_reference(spec: str | None, model: nn.Module) -> tuple[nn.Module | None, str, str | None]:
    """Resolve ``--reference`` into ``(encoder or None, description, note)``.

    Args:
        spec: ``None`` (the pretrained version of ``model.config.encoder``), ``"none"`` (no
            reference), a checkpoint directory or registered model name (its encoder), or an
            encoder name from :func:`vqrae.tokenizer.encoders.list_encoders` (pretrained).
        model: the evaluated model (its encoder settings configure a pretrained reference).

    Raises:
        ValueError: an explicit ``spec`` that names nothing usable.
    """
    if spec is None:
        name = model.config.encoder
        if get_encoder_spec(name).asset is None:
            note = (
                f"the model's encoder {name!r} has no pretrained weights: no reference "
                "(give --reference to compare with another encoder or checkpoint)"
            )
            return None, "none", note
        return _pretrained_encoder(name, model), f"pretrained {name}", None
    if spec == "none":
        return None, "none", "no reference encoder requested"
    if Path(spec).is_dir() or spec in trained_checkpoints():
        return VQRAE.from_pretrained(spec).encoder, spec, None
    if spec in list_encoders():
        return _pretrained_encoder(spec, model), f"pretrained {spec}", None
    raise ValueError(
        f"--reference {spec!r} is not a checkpoint directory, a trained model "
        f"({', '.join(trained_checkpoints())}) or an encoder ({', '.join(list_encoders())})"
    )


# ---------------------------------------------------------------------------- analysis
def _label_ids(labels: Sequence[str | None]) -> tuple[np.ndarray, torch.Tensor, list[str]]:
    """Rows with a label, their integer ids, and the sorted class names."""
    rows = np.asarray([i for i, label in enumerate(labels) if label is not None], np.int64)
    classes = sorted({label for label in labels if label is not None})
    index = {c: i for i, c in enumerate(classes)}
    ids = torch.tensor([index[labels[i]] for i in rows], dtype=torch.long)
    return rows, ids, classes


def _knn(features: torch.Tensor, ids: torch.Tensor, k: int) -> tuple[float | None, str | None]:
    counts = torch.bincount(ids) if ids.numel() else torch.zeros(0)
    if ids.numel() < 2 or not bool((counts >= 2).any()):
        return None, "k-NN needs a class with at least two labelled images"
    return knn_accuracy(features, ids, k=min(k, ids.numel() - 1)), None


def bag_of_codes(codes: torch.Tensor) -> torch.Tensor:
    """Per-image code frequencies over the codes used anywhere: (M, N) indices -> (M, U)."""
    used, inverse = torch.unique(codes, return_inverse=True)  # inverse (M, N)
    bags = torch.zeros(codes.shape[0], used.numel(), dtype=torch.float32)
    bags.scatter_add_(1, inverse, torch.ones_like(inverse, dtype=torch.float32))
    return bags / codes.shape[1]


def _cluster(features: torch.Tensor, k: int, seed: int) -> tuple[np.ndarray, np.ndarray, int, bool]:
    """Spherical k-means: (assignments, distance to own centroid, iterations, converged)."""
    x = F.normalize(features.float(), dim=1)
    result = kmeans(x, k, seed=seed)
    dist = (x - result.centroids[result.assignments]).norm(dim=1)
    return result.assignments.numpy(), dist.numpy(), result.iterations, result.converged


def evaluate_semantics(
    model: nn.Module,
    source: ImageSource,
    size: int | None = None,
    batch_size: int = 16,
    device: torch.device | str | None = None,
    max_images: int | None = None,
    reference: nn.Module | None = None,
    reference_name: str = "none",
    reference_note: str | None = None,
    clusters: int | None = None,
    label_groups: str = "none",
    knn_k: int = 1,
    seed: int = 0,
    progress: bool = True,
    on_failure: Callable[[SourceRecord], None] | None = None,
) -> SemanticResult:
    """Measure semantic retention (see the module docstring).

    Args:
        model: a VQRAE (``encode`` and ``quantize`` are used; no decoding).
        source: the images; labels come with the records.
        size: resolution (default: the model's image size).
        batch_size: images per forward pass.
        device: where to run (default: the model's device).
        max_images: only the first N items of the source.
        reference: reference encoder (images in [0, 1] -> (B, N', d')), or ``None``.
        reference_name: how to name it in the outputs.
        reference_note: why there is no reference (kept in the outputs).
        clusters: k of k-means (default: the number of classes, or 10 without labels).
        label_groups: ``"none"`` or ``"restricted-imagenet"`` (see :data:`LABEL_GROUPS`).
        knn_k: neighbours of the k-NN classifier (1: top-1 nearest neighbour).
        seed: k-means seed.
        progress: show a progress bar.
        on_failure: called with each unreadable record.

    Returns:
        A :class:`SemanticResult`; ``metrics`` holds ``cosine_similarity``, ``knn_top1``
        (``model`` / ``reference`` / ``codes``), ``purity`` (``features`` / ``codes``), the
        majority-class baseline, counts, settings and notes.
    """
    if label_groups not in LABEL_GROUPS:
        raise ValueError(f"unknown label groups {label_groups!r}; use {', '.join(LABEL_GROUPS)}")
    start = time.perf_counter()
    target = torch.device(device) if device is not None else next(model.parameters()).device
    model = model.to(target).eval()
    if reference is not None:
        reference = reference.to(target).eval()
    size = resolve_size(model, size)
    precision = default_precision(target)
    group = LABEL_GROUPS[label_groups]
    total = len(source) if max_images is None else min(len(source), max_images)

    pooled, ref_pooled, codes = [], [], []
    names: list[str] = []
    labels: list[str | None] = []
    indices: list[int] = []
    cos_sum, cos_count, failures = 0.0, 0, []
    notes = [reference_note] if reference_note else []
    shape_note = None
    bar = tqdm(total=total, desc="eval-semantics", unit="img", disable=not progress or None)
    for batch in iter_batches(source.take(max_images), batch_size, size):
        for record in batch.failures:
            failures.append({"name": record.name, "error": record.error})
            if on_failure is not None:
                on_failure(record)
        if len(batch):
            x = batch.pixels.to(target)
            with torch.no_grad(), autocast(target, precision):
                feats = model.encode(x)  # (B, N, d)
                idx = model.quantize(feats).indices  # (B, N)
                ref = None
                if reference is not None:  # it reads what the model's encoder reads
                    encoder_input = getattr(model, "encoder_input", None)
                    ref = reference(encoder_input(x) if encoder_input else x)  # (B, N', d')
            feats = feats.float()
            pooled.append(feats.mean(dim=1).cpu())
            codes.append(idx.to(torch.int64).cpu())
            if ref is not None:
                ref = ref.float()
                ref_pooled.append(ref.mean(dim=1).cpu())
                if ref.shape == feats.shape:
                    cos = feature_cosine_similarity(feats, ref, per_image=True)
                    cos_sum += float(cos.sum().item())
                    cos_count += cos.numel()
                else:
                    shape_note = (
                        f"cosine similarity skipped: model features {tuple(feats.shape[1:])} "
                        f"and reference features {tuple(ref.shape[1:])} differ in shape"
                    )
            names.extend(batch.names)
            labels.extend(group(label) for label in batch.labels)
            indices.extend(batch.indices)
        bar.update(len(batch) + len(batch.failures))
    bar.close()
    if shape_note:
        notes.append(shape_note)
    if not names:
        raise ValueError("no image could be read")

    features = torch.cat(pooled)  # (M, d)
    ref_features = torch.cat(ref_pooled) if ref_pooled else None
    bags = bag_of_codes(torch.cat(codes))  # (M, U)
    rows, ids, classes = _label_ids(labels)
    analysed = rows if rows.size else np.arange(len(names))
    if not rows.size:
        notes.append("no labels: k-NN and purity skipped; clusters use all images")

    knn: dict[str, float | None] = {}
    if rows.size:
        for key, feats_all in (("model", features), ("reference", ref_features), ("codes", bags)):
            if feats_all is None:
                knn[key] = None
                continue
            knn[key], note = _knn(feats_all[rows], ids, knn_k)
            if note and note not in notes:
                notes.append(note)

    m = len(analysed)
    k = clusters or (len(classes) if classes else 10)
    k = int(min(max(k, 1), m))
    clusterings: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    purity: dict[str, float | None] = {}
    kmeans_info: dict[str, Any] = {}
    for key, feats_all in (("features", features), ("codes", bags)):
        assign, dist, iters, converged = _cluster(feats_all[analysed], k, seed)
        clusterings[key] = (assign, dist)
        purity[key] = cluster_purity(torch.from_numpy(assign), ids) if rows.size else None
        kmeans_info[key] = {"iterations": iters, "converged": converged}
    baseline = None
    if rows.size:
        baseline = Counter(ids.tolist()).most_common(1)[0][1] / rows.size

    metrics = {
        "model": getattr(model.config, "encoder", type(model).__name__),
        "reference": reference_name,
        "data": getattr(source, "description", None),
        "image_size": size,
        "num_images": len(names),
        "num_failed": len(failures),
        "num_labelled": int(rows.size),
        "num_classes": len(classes),
        "label_groups": label_groups,
        "cosine_similarity": cos_sum / cos_count if cos_count else None,
        "knn_k": knn_k,
        "knn_top1": knn,
        "clusters": k,
        "purity": purity,
        "purity_majority_baseline": baseline,
        "kmeans": kmeans_info,
        "codes_used": int(bags.shape[1]),
        "codebook_size": int(model.config.codebook_size),
        "tokens_per_image": int(codes[0].shape[1]),
        "device": str(target),
        "precision": precision,
        "seconds": round(time.perf_counter() - start, 3),
        "notes": notes,
        "failures": failures,
    }
    return SemanticResult(metrics, names, labels, indices, clusterings, analysed)


# ---------------------------------------------------------------------------- writing
def write_semantics(
    result: SemanticResult,
    source: ImageSource,
    out_dir: str | os.PathLike[str],
    show_clusters: int = 6,
    thumbs_per_cluster: int = 10,
    thumb_size: int = 96,
) -> Path:
    """Write ``semantics.json`` and ``semantics.html`` (thumbnails in ``thumbs/``).

    Clusters are shown largest first; their thumbnails are the members nearest to the centroid,
    re-read from ``source``.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    text = json.dumps(json_safe(result.metrics), indent=2, allow_nan=False) + "\n"
    atomic_write(out / "semantics.json", lambda tmp: tmp.write_text(text))
    thumbs: dict[int, str] = {}

    def thumb(row: int) -> str:
        if row not in thumbs:
            record = source.load(result.indices[row])
            rel = f"thumbs/{result.indices[row]:06d}.png"
            if record.image is not None:
                save_png(np.asarray(center_crop_resize(record.image, thumb_size)), out / rel)
            thumbs[row] = rel
        return thumbs[row]

    sections = [
        _cluster_section(result, key, title, thumb, show_clusters, thumbs_per_cluster)
        for key, title in (
            ("features", "k-means on mean-pooled continuous features"),
            ("codes", "k-means on per-image code histograms (bag of codes)"),
        )
    ]
    body = _semantics_header(result.metrics) + "".join(sections) + _semantics_footer(result)
    return write_text(out / "semantics.html", render_page("Semantic retention", body))


def _semantics_header(m: dict[str, Any]) -> str:
    knn, purity = m["knn_top1"], m["purity"]
    pct = 100.0
    cells = [
        ("Cosine sim.", fmt(m["cosine_similarity"], 4), f"vs {m['reference']}"),
        ("k-NN model", fmt(_scale(knn.get("model"), pct), 1, "%"), f"top-1, k={m['knn_k']}"),
        ("k-NN reference", fmt(_scale(knn.get("reference"), pct), 1, "%"), "same protocol"),
        ("k-NN codes", fmt(_scale(knn.get("codes"), pct), 1, "%"), "bag of codes"),
        ("Purity features", fmt(_scale(purity.get("features"), pct), 1, "%"), f"k={m['clusters']}"),
        ("Purity codes", fmt(_scale(purity.get("codes"), pct), 1, "%"), f"k={m['clusters']}"),
        (
            "Images",
            f"{m['num_images']:,}",
            f"{m['num_labelled']:,} labelled, {m['num_classes']} classes",
        ),
    ]
    head = "".join(f"<th>{esc(n)}</th>" for n, _, _ in cells)
    row = "".join(f"<td>{v}<span>{esc(s)}</span></td>" for _, v, s in cells)
    notes = list(m["notes"])
    if m["purity_majority_baseline"] is not None:
        notes.append(
            f"Purity baseline (one cluster = the majority class): "
            f"{100 * m['purity_majority_baseline']:.1f}%; label groups: {m['label_groups']}."
        )
    notes_html = (
        "<ul class='notes'>" + "".join(f"<li>{esc(n)}</li>" for n in notes) + "</ul>"
        if notes
        else ""
    )
    size = m["image_size"]
    sub = (
        f"<code>{esc(m['model'])}</code> on <code>{esc(m['data'] or '')}</code> &middot; "
        f"{m['num_images']:,} images at {size}&times;{size} &middot; "
        f"{m['codes_used']:,} of {m['codebook_size']:,} codes used"
    )
    return (
        f"<header><h1>Semantic retention</h1><p class='sub'>{sub}</p>"
        f"<table class='headline'><tr>{head}</tr><tr>{row}</tr></table>{notes_html}</header>"
    )


def _scale(value: float | None, factor: float) -> float | None:
    return None if value is None else value * factor


def _cluster_section(
    result: SemanticResult,
    key: str,
    title: str,
    thumb: Callable[[int], str],
    show: int,
    per_cluster: int,
) -> str:
    assign, dist = result.clusterings[key]
    rows = result.analysed
    sizes = Counter(assign.tolist())
    purity = result.metrics["purity"].get(key)
    parts = [
        f"<h2>{esc(title)}<small>{len(sizes)} clusters"
        + (f", purity {100 * purity:.1f}%" if purity is not None else "")
        + "</small></h2><div class='clusters'>"
    ]
    for cluster, count in sorted(sizes.items(), key=lambda t: (-t[1], t[0]))[:show]:
        members = np.flatnonzero(assign == cluster)
        members = members[np.argsort(dist[members], kind="stable")]
        member_labels = [result.labels[rows[i]] for i in members]
        top = Counter(x for x in member_labels if x is not None).most_common(1)
        majority = (
            f"majority <b>{esc(top[0][0])}</b> ({top[0][1]}/{count})" if top else "unlabelled"
        )
        cells = "".join(
            f"<figure><img src='{esc(thumb(int(rows[i])))}' alt='' title='"
            f"{esc(result.names[rows[i]])}'><figcaption>"
            f"{esc(result.labels[rows[i]] or result.names[rows[i]])}</figcaption></figure>"
            for i in members[:per_cluster]
        )
        parts.append(
            f"<div class='cluster'><div class='chead'>cluster {cluster} &middot; {count} images"
            f" &middot; {majority}</div><div class='thumbs'>{cells}</div></div>"
        )
    parts.append("</div>")
    return "".join(parts)


def _semantics_footer(result: SemanticResult) -> str:
    m = result.metrics
    return (
        "<style>.clusters{display:grid;gap:10px}.cluster{background:#fff;border:1px solid "
        "var(--line);border-radius:10px;padding:8px 10px}.chead{color:var(--muted);"
        "font-size:12.5px;margin-bottom:6px}.thumbs{display:flex;gap:6px;flex-wrap:wrap}"
        ".thumbs figure{margin:0;width:96px}.thumbs img{width:96px;height:96px;border-radius:4px;"
        "display:block;object-fit:cover}.thumbs figcaption{font-size:10.5px;color:var(--muted);"
        "white-space:nowrap;overflow:hidden;text-overflow:ellipsis}</style>"
        "<footer><div><b>Protocol.</b> Cosine similarity token by token between the model's "
        "continuous features and the reference's, mean per image then over images. k-NN: "
        "leave-one-out, cosine similarity on L2-normalised mean-pooled features (or bag-of-code "
        "frequencies). k-means: spherical (L2-normalised inputs), k-means++ seed "
        f"0; thumbnails are the members nearest to each centroid.</div><div>{m['seconds']:.1f} s "
        f"on {esc(m['device'])}. Numbers: <a href='semantics.json'>semantics.json</a>.</div>"
        "</footer>"
    )
