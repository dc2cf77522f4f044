"""What pooling the demo tokenizer's 48x48 feature grid costs the understanding path.

The CPU demo cannot afford 2304 image tokens per sample in a 135M-parameter LM, so its
understanding model average-pools the grid to k x k (``MLLMConfig.pool``). Two costs:

* **information**: token-level probes trained on shapes-world scenes (the training split) and
  scored on scenes of the test split, for what the understanding questions ask. Each reads the
  k x k pooled tokens (standardised) as an LM's attention could: *presence* of each class and of
  each colour, ``sigmoid(max_t f_t . w + b)`` (a token must carry the object: averaging a small
  object into a large cell dilutes it), and the *centre* of each single object, a soft-argmax
  over the token centres with weights ``softmax_t(f_t . w)`` (mean absolute error in image
  widths; GenEval's relations use a 0.1 margin); a row without features (majority answer,
  mean centre) is the floor;
* **compute**: the CPU seconds of the language model's training step (SmolLM2-135M-Instruct, fp32 on the CPU,
  forward and backward, frozen weights as in stage 1 and all weights as in full tuning) on
  sequences of the pooled image tokens plus a typical question-and-answer text.

    .venv/bin/python benchmarks/mllm_pooling.py                      # 400 + 200 scenes
    .venv/bin/python benchmarks/mllm_pooling.py --train 200 --test 100 --sizes 4 8 --no-timing
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from vqrae.data.shapes import make_shapes_dataset
from vqrae.data.shapes.colour import COLOUR_NAMES
from vqrae.data.shapes.scene import Scene
from vqrae.data.shapes.vocab import SHAPES
from vqrae.mllm.projector import pool_tokens
from vqrae.mllm.vision import VisionFeatures
from vqrae.tokenizer.model import VQRAE


def encode(root: Path, vision: VisionFeatures, sizes: list[int]) -> tuple[dict, list[Scene]]:
    """Pooled features {k: (n, k*k*d) float32} and the scenes of a written data set."""
    scenes, images = [], []
    for line in (root / "scenes.jsonl").read_text().splitlines():
        record = json.loads(line)
        scenes.append(Scene.from_dict(record["scene"]))
        images.append(root / record["image"])
    pooled: dict[int, list[torch.Tensor]] = {k: [] for k in sizes}
    with torch.no_grad():
        for start in range(0, len(images), 8):
            batch = torch.stack([vision.load(p) for p in images[start : start + 8]])
            full = vision(batch)  # (b, 2304, d): vision has no pooling of its own
            for k in sizes:
                pooled[k].append(pool_tokens(full, vision.grid, k).flatten(1).half())
    return {k: torch.cat(v).float() for k, v in pooled.items()}, scenes


def targets(scenes: list[Scene]) -> dict[str, np.ndarray]:
    """Per scene: counts (n, 6), colour presence (n, 10), single objects' centres (n, 6, 2)."""
    counts = np.array([[s.counts()[c] for c in SHAPES] for s in scenes])
    colours = np.array(
        [[any(o.colour == c for o in s.objects) for c in COLOUR_NAMES] for s in scenes]
    )
    centres = np.full((len(scenes), len(SHAPES), 2), np.nan)
    for i, s in enumerate(scenes):
        for j, c in enumerate(SHAPES):
            if s.counts()[c] == 1:
                o = s.of_shape(c)[0]
                centres[i, j] = (o.cx, o.cy)
    return {"counts": counts, "colours": colours.astype(float), "centres": centres}


def _standardised(train: torch.Tensor, test: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Tokens (n, t, d) z-scored per channel with the training tokens' statistics."""
    flat = train.flatten(0, 1)
    mean, std = flat.mean(0), flat.std(0).clamp_min(1e-6)
    return (train - mean) / std, (test - mean) / std


def presence_probe(train, test, y_train: np.ndarray, y_test: np.ndarray, steps: int) -> float:
    """Accuracy of ``sigmoid(max_t f_t . w_c + b_c)``: is there an object of kind c anywhere?
    (A token must carry the object for the max to find it; averaging dilutes small ones.)"""
    torch.manual_seed(0)
    weight = torch.zeros(train.shape[-1], y_train.shape[1], requires_grad=True)
    bias = torch.zeros(y_train.shape[1], requires_grad=True)
    optimiser = torch.optim.Adam([weight, bias], lr=0.02)
    target = torch.from_numpy(y_train).float()
    for _ in range(steps):
        logits = (train @ weight).amax(dim=1) + bias  # (n, C)
        loss = F.binary_cross_entropy_with_logits(logits, target) + 1e-4 * weight.pow(2).sum()
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    with torch.no_grad():
        predicted = ((test @ weight).amax(dim=1) + bias > 0).numpy()
    return float((predicted == (y_test > 0.5)).mean())


def locate_probe(train, test, c_train: np.ndarray, c_test: np.ndarray, k: int, steps: int) -> float:
    """Mean absolute error (image widths) of a soft-argmax over the k x k token centres,
    weighted by ``softmax_t(f_t . w_c)``: where is the one object of class c?"""
    torch.manual_seed(0)
    side = (torch.arange(k, dtype=torch.float32) + 0.5) / k
    xy = torch.stack(torch.meshgrid(side, side, indexing="xy"), dim=-1).reshape(-1, 2)  # (t, 2)
    weight = torch.zeros(train.shape[-1], c_train.shape[1], requires_grad=True)
    optimiser = torch.optim.Adam([weight], lr=0.05)

    def predict(x: torch.Tensor) -> torch.Tensor:
        attention = torch.softmax(x @ weight, dim=1)  # (n, t, C)
        return torch.einsum("ntc,tj->ncj", attention, xy)  # (n, C, 2)

    target = torch.from_numpy(np.nan_to_num(c_train)).float()
    mask = torch.from_numpy(~np.isnan(c_train))
    for _ in range(steps):
        loss = (predict(train) - target).abs()[mask].mean()
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    with torch.no_grad():
        errors = (predict(test).numpy() - c_test)[~np.isnan(c_test)]
    return float(np.abs(errors).mean())


def baseline(train_y: dict, test_y: dict) -> dict[str, float]:
    """The same scores from the training targets alone: presence by majority, every centre
    at the training mean."""
    shapes = (train_y["counts"] > 0).mean(0) > 0.5
    colours = train_y["colours"].mean(0) > 0.5
    centre = np.nanmean(train_y["centres"], axis=0)  # (6, 2)
    return {
        "shape_acc": float(((test_y["counts"] > 0) == shapes).mean()),
        "colour_acc": float(((test_y["colours"] > 0.5) == colours).mean()),
        "centre_mae": float(np.nanmean(np.abs(test_y["centres"] - centre))),
    }


def probe(train_x, test_x, train_y: dict, test_y: dict, k: int, steps: int) -> dict[str, float]:
    """The three token-level probes on one pooled size."""
    train, test = _standardised(
        train_x.view(len(train_x), k * k, -1), test_x.view(len(test_x), k * k, -1)
    )
    shapes_train = (train_y["counts"] > 0).astype(float)
    shapes_test = (test_y["counts"] > 0).astype(float)
    return {
        "shape_acc": presence_probe(train, test, shapes_train, shapes_test, steps),
        "colour_acc": presence_probe(train, test, train_y["colours"], test_y["colours"], steps),
        "centre_mae": locate_probe(train, test, train_y["centres"], test_y["centres"], k, steps),
    }


def step_seconds(lm, length: int, batch: int, train_lm: bool, repeats: int) -> float:
    """Median CPU seconds (all threads; unlike wall time, independent of what else a shared
    machine runs) of a forward + backward of ``lm`` on random (batch, length) inputs."""
    lm.requires_grad_(train_lm)
    embeds = torch.randn(batch, length, lm.config.hidden_size, requires_grad=True)
    times = []
    for _ in range(repeats + 1):
        start = time.process_time()
        hidden = lm.model(inputs_embeds=embeds, use_cache=False).last_hidden_state
        logits = lm.lm_head(hidden[:, -16:])  # a typical answer's worth of targets
        logits.float().logsumexp(-1).mean().backward()
        times.append(time.process_time() - start)
        lm.zero_grad(set_to_none=True)
    return float(np.median(times[1:]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tokenizer", default="vqrae-dinov2-s-demo")
    parser.add_argument("--train", type=int, default=400)
    parser.add_argument("--test", type=int, default=200)
    parser.add_argument("--sizes", type=int, nargs="+", default=[2, 4, 6, 8, 12, 16])
    parser.add_argument("--text-tokens", type=int, default=60, help="question + answer + template")
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--timing", action=argparse.BooleanOptionalAction, default=True)
    parser.add_argument("--probe-steps", type=int, default=400)
    parser.add_argument("--features", type=Path, help="a file to keep the encoded features in")
    args = parser.parse_args()
    torch.manual_seed(0)
    vision = VisionFeatures(VQRAE.from_pretrained(args.tokenizer), pool=None)
    print(f"tokenizer {args.tokenizer}: grid {vision.grid}, d={vision.dim}")
    data = {}
    if args.features is not None and args.features.is_file():
        saved = torch.load(args.features, weights_only=False)
        data = {split: (x, [Scene.from_dict(d) for d in s]) for split, (x, s) in saved.items()}
    with tempfile.TemporaryDirectory() as tmp:
        for split, n in (("train", args.train), ("test", args.test)):
            if split in data:
                continue
            root = Path(tmp) / split
            make_shapes_dataset(root, n, seed=0, size=vision.image_size, split=split,
                                geneval_per_tag=1, mme_per_subtask=1, dpg_items=1, hf=False)  # fmt: skip
            started = time.perf_counter()
            data[split] = encode(root, vision, args.sizes)
            print(f"encoded {n} {split} scenes in {time.perf_counter() - started:.0f} s")
    if args.features is not None and not args.features.is_file():
        torch.save(
            {k: (x, [s.to_dict() for s in sc]) for k, (x, sc) in data.items()}, args.features
        )
    (train_x, train_s), (test_x, test_s) = data["train"], data["test"]
    train_y, test_y = targets(train_s), targets(test_s)
    lm = None
    if args.timing:
        from vqrae.llm.testing import smollm2

        lm, _ = smollm2()
        lm.train()
    header = "| pool | tokens | shape presence | colour presence | centre MAE |"
    if lm is not None:
        header += " stage-1 step (CPU-s) | full-tuning step (CPU-s) |"
    print(
        f"\ntoken probes on {args.train} train / {args.test} test scenes; LM steps at batch {args.batch}"
    )
    print(header)
    print("|" + "---|" * (header.count("|") - 1))
    base = baseline(train_y, test_y)
    print(f"| none (targets' majority / mean) | 0 | {base['shape_acc']:.3f} | "
          f"{base['colour_acc']:.3f} | {base['centre_mae']:.3f} |")  # fmt: skip
    for k in args.sizes:
        result = probe(train_x[k], test_x[k], train_y, test_y, k, args.probe_steps)
        row = f"| {k}x{k} | {k * k} | {result['shape_acc']:.3f} | {result['colour_acc']:.3f} | {result['centre_mae']:.3f} |"
        if lm is not None:
            length = k * k + args.text_tokens
            frozen = step_seconds(lm, length, args.batch, False, args.repeats)
            full = step_seconds(lm, length, args.batch, True, args.repeats)
            row += f" {frozen:.2f} | {full:.2f} |"
        print(row, flush=True)


if __name__ == "__main__":
    main()
