"""Does an understanding model read the image? Its answers with the right image against another's.

For each question of a model_vqa file with truths (a shapes data set's ``vqa/questions.jsonl``:
``question_id``, ``image``, ``text``, ``answer``, ``category``), asked alone in the model's chat
template, the true answer is scored teacher-forced: the loss per answer token and whether every
answer token is the model's top choice. Three feature sets are compared:

* ``right``: the features of the question's image;
* ``other``: the features of another image (the next row of the batch whose image differs:
  a data set's questions come a few per image), the named baseline: what the language prior
  and the question alone give;
* ``none``: zero features.

A model that reads the image scores well above ``other``; one that answers from the prior scores
the same (the first demo runs did: BENCHMARKS.md, "Understanding: accuracy on held-out scenes").
Greedy answering (``vqrae answer``) can only be as good as ``right``'s accuracy.

    .venv/bin/python benchmarks/mllm_image_use.py --model runs/mllm-s2/model \\
        --questions runs/mllm-eval/test/vqa/questions.jsonl --limit 200
"""

from __future__ import annotations

import argparse
from collections import defaultdict
from pathlib import Path

import torch
import torch.nn.functional as F

from vqrae.llm import IGNORE_INDEX
from vqrae.mllm.conversations import Conversation
from vqrae.mllm.data import ConversationDataset, collate
from vqrae.mllm.model import MLLM
from vqrae.utils.jsonl import read_jsonl


def conversations(path: Path, limit: int | None) -> tuple[list[Conversation], list[str]]:
    """One single-turn conversation per question row, and each row's category."""
    rows = read_jsonl(path)[:limit]
    folder = path.parent.parent if path.parent.name == "vqa" else path.parent
    convs, kinds = [], []
    for row in rows:
        messages = (
            {"role": "user", "content": row["text"]},
            {"role": "assistant", "content": str(row["answer"])},
        )
        image = str(folder / row["image"])
        convs.append(Conversation(id=str(row["question_id"]), image=image, messages=messages))
        kinds.append(str(row.get("category", "all")))
    return convs, kinds


def other_image(images: list[str]) -> list[int]:
    """For each row, the next row (cyclically) whose image is a different one."""
    out = []
    for i, image in enumerate(images):
        j = next((k % len(images) for k in range(i + 1, i + len(images))
                  if images[k % len(images)] != image), None)  # fmt: skip
        if j is None:
            raise SystemExit("a batch holds one image only: raise --batch-size")
        out.append(j)
    return out


@torch.no_grad()
def score(model: MLLM, batch, features: torch.Tensor) -> tuple[list[float], list[bool]]:
    """Per row: the mean loss over its answer tokens, and whether all of them are the argmax."""
    embeds = model.embed(batch.input_ids, features)
    positions = (batch.attention_mask.long().cumsum(1) - 1).clamp_min(0)
    logits = model.lm(
        inputs_embeds=embeds, attention_mask=batch.attention_mask, position_ids=positions
    ).logits[:, :-1]  # (B, T-1, V)
    targets = batch.labels[:, 1:]  # (B, T-1)
    losses, right = [], []
    for row in range(targets.shape[0]):
        keep = targets[row] != IGNORE_INDEX
        ce = F.cross_entropy(logits[row][keep].float(), targets[row][keep])
        losses.append(float(ce))
        right.append(bool((logits[row][keep].argmax(-1) == targets[row][keep]).all()))
    return losses, right


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", required=True, help="an understanding model folder")
    parser.add_argument("--questions", required=True, type=Path, help="model_vqa rows with truths")
    parser.add_argument("--limit", type=int, default=200, help="questions to score")
    parser.add_argument("--batch-size", type=int, default=16)
    args = parser.parse_args()
    model = MLLM.from_pretrained(args.model, device="cpu", precision="32").eval()
    convs, kinds = conversations(args.questions, args.limit)
    dataset = ConversationDataset(
        convs,
        model.tokenizer,
        model.config,
        template="chat",
        image_token_id=model.image_token_id,
        num_image_tokens=model.num_image_tokens,
        vision=model.vision,
    )
    table: dict[str, dict[str, list]] = defaultdict(lambda: defaultdict(list))
    for start in range(0, len(dataset), args.batch_size):
        rows = range(start, min(start + args.batch_size, len(dataset)))
        batch = collate([dataset[i] for i in rows], int(model.tokenizer.pad_token_id))
        with torch.no_grad():
            features = model.vision(batch.images)  # (B, N, d)
        images = [convs[i].image for i in rows]
        for name, f in (
            ("right", features),
            ("other", features[other_image(images)]),
            ("none", torch.zeros_like(features)),
        ):
            losses, right = score(model, batch, f)
            for i, loss, ok in zip(rows, losses, right, strict=True):
                for kind in (kinds[i], "all"):
                    table[name][f"{kind} loss"].append(loss)
                    table[name][f"{kind} acc"].append(ok)
    order = sorted(set(kinds)) + ["all"]
    print(f"{args.model}: {len(dataset)} questions of {args.questions}, each asked alone")
    print("| features | " + " | ".join(order) + " |")
    print("|---|" + "---|" * len(order))
    for name in ("right", "other", "none"):
        cells = []
        for kind in order:
            acc = table[name][f"{kind} acc"]
            loss = table[name][f"{kind} loss"]
            cells.append(f"{sum(acc) / len(acc):.3f} ({sum(loss) / len(loss):.2f})")
        print(f"| {name} | " + " | ".join(cells) + " |")
    print("cells: teacher-forced accuracy (mean loss per answer token)")


if __name__ == "__main__":
    main()
