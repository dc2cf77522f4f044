"""The visual-token loss: the codes are the only targets, full and visual heads, padding-blind."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from vqrae.generation.objective import VisualTokenObjective
from vqrae.generation.sequences import training_batch


def _batch(generator, texts, codes):
    prompts = [generator.encode(t).ids for t in texts]
    return training_batch(prompts, codes, generator.vocab, generator.pad_id)


def test_losses_are_cross_entropy_on_the_code_positions_only(generator) -> None:
    vocab, lm = generator.vocab, generator.lm
    codes = torch.randint(0, 64, (2, 16), generator=torch.Generator().manual_seed(0))
    batch = _batch(generator, ["a red circle", "two blue stars"], codes)
    with torch.no_grad():
        logits = lm(
            input_ids=batch.input_ids,
            attention_mask=batch.attention_mask,
            position_ids=batch.position_ids,
        ).logits  # (B, T, V)
    s = batch.image_start
    at_codes = logits[:, s : s + 16]  # the positions that predict the codes
    full = F.cross_entropy(at_codes.flatten(0, 1), (codes + vocab.code_offset).flatten())
    visual = F.cross_entropy(at_codes[..., vocab.code_slice].flatten(0, 1), codes.flatten())
    with torch.no_grad():
        out_full = VisualTokenObjective(lm, vocab, "full")(batch)
        out_visual = VisualTokenObjective(lm, vocab, "visual")(batch)
    torch.testing.assert_close(out_full.loss, full)
    torch.testing.assert_close(out_visual.loss, visual)
    assert out_visual.loss < out_full.loss  # the visual softmax has fewer competitors


def test_a_sample_s_loss_does_not_depend_on_its_batch_padding(generator) -> None:
    objective = VisualTokenObjective(generator.lm, generator.vocab, "full")
    codes = torch.randint(0, 64, (1, 16), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        alone = objective(_batch(generator, ["a star"], codes)).loss
        twice = objective(_batch(generator, ["a star", "a star"], codes.repeat(2, 1))).loss
        other = torch.randint(0, 64, (1, 16), generator=torch.Generator().manual_seed(2))
        padded = objective(
            _batch(generator, ["a star", "three crosses left of a big yellow square"],
                   torch.cat([codes, other]))
        )  # fmt: skip
        other_alone = objective(
            _batch(generator, ["three crosses left of a big yellow square"], other)
        ).loss
    torch.testing.assert_close(twice, alone)
    torch.testing.assert_close(padded.loss, (alone + other_alone) / 2, atol=1e-5, rtol=1e-5)


def test_every_trainable_parameter_gets_a_gradient(generator) -> None:
    lm = generator.lm.train()
    codes = torch.randint(0, 64, (2, 16), generator=torch.Generator().manual_seed(0))
    out = VisualTokenObjective(lm, generator.vocab, "visual")(
        _batch(generator, ["a red circle", ""], codes)
    )
    out.loss.backward()
    missing = [n for n, p in lm.named_parameters() if p.grad is None or not p.grad.abs().sum()]
    assert not missing
    assert set(out.metrics) == {"loss", "accuracy"} and 0 <= out.metrics["accuracy"] <= 1
