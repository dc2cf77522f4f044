"""Sampling: greedy tokens equal transformers' generate with the same guidance, KV caches agree,
per-image seeds are independent of the batch, left pads are masked, top-k/top-p filters."""

from __future__ import annotations

import pytest
import torch

from vqrae.generation.hf_guidance import GuidedCodesProcessor
from vqrae.generation.sampler import SamplingConfig, draw, filter_logits, sample_codes
from vqrae.generation.sequences import prompt_batch

N = 16


def _prompts(generator, texts):
    return [generator.encode(t).ids for t in texts]


def _sample(generator, texts, config, seeds):
    return sample_codes(
        generator.lm, generator.vocab, _prompts(generator, texts), generator.unconditional(),
        N, config, seeds, generator.pad_id,
    )  # fmt: skip


def _hf_greedy(generator, texts, cfg):
    vocab = generator.vocab
    rows = _prompts(generator, texts)
    guided = cfg != 1
    if guided:
        rows = rows + [generator.unconditional()] * len(texts)
    batch = prompt_batch(rows, vocab, generator.pad_id)
    out = generator.lm.generate(
        batch.input_ids,
        attention_mask=batch.attention_mask,
        max_new_tokens=N,
        min_new_tokens=N,
        do_sample=False,
        logits_processor=[GuidedCodesProcessor(vocab, cfg, guided)],
        pad_token_id=generator.pad_id,
        eos_token_id=None,
    )
    return out[: len(texts), batch.input_ids.shape[1] :] - vocab.code_offset


@pytest.mark.parametrize("cfg", [1.0, 3.0])
def test_greedy_codes_equal_transformers_generate_with_the_same_guidance(generator, cfg) -> None:
    texts = ["a red circle", "two blue stars and a green hexagon on a grey ground"]
    ours = _sample(generator, texts, SamplingConfig(cfg=cfg, temperature=0), [0, 1])
    assert torch.equal(ours, _hf_greedy(generator, texts, cfg))
    assert ours.min() >= 0 and ours.max() < generator.vocab.num_codes


def test_static_and_dynamic_caches_draw_the_same_codes(generator) -> None:
    texts = ["a red circle", "a star"]
    static = _sample(generator, texts, SamplingConfig(cfg=2.0, cache="static"), [3, 4])
    dynamic = _sample(generator, texts, SamplingConfig(cfg=2.0, cache="dynamic"), [3, 4])
    assert torch.equal(static, dynamic)


def test_a_seed_gives_the_same_image_whatever_the_batch(generator) -> None:
    config = SamplingConfig(cfg=3.0, temperature=1.0, top_k=20)
    alone = _sample(generator, ["a red circle"], config, [7])
    long_prompt = "three purple crosses above two yellow squares and an orange star"
    batched = _sample(generator, [long_prompt, "a red circle", "a star"], config, [1, 7, 7])
    assert torch.equal(batched[1], alone[0])  # left-padded beside a longer prompt
    assert not torch.equal(batched[2], alone[0])  # another prompt, same seed: another image
    assert not torch.equal(_sample(generator, ["a red circle"], config, [8]), alone)


def test_left_pads_do_not_change_a_prompt_s_hidden_states(generator) -> None:
    vocab, lm = generator.vocab, generator.lm
    short, long = _prompts(generator, ["a star", "two green triangles and a blue cross"])
    body = lm.get_decoder()
    outputs = []
    for rows in ([short], [long, short]):
        batch = prompt_batch(rows, vocab, generator.pad_id)
        with torch.no_grad():
            hidden = body(
                input_ids=batch.input_ids,
                attention_mask=batch.attention_mask,
                position_ids=batch.position_ids,
            ).last_hidden_state
        outputs.append(hidden[-1, -1])
    torch.testing.assert_close(outputs[0], outputs[1], atol=1e-5, rtol=1e-5)


def test_unguided_sampling_runs_no_unconditional_rows(generator, monkeypatch) -> None:
    body = generator.lm.get_decoder()
    rows_seen = []
    original = body.forward

    def spy(*args, **kwargs):
        rows_seen.append(kwargs["input_ids"].shape[0])
        return original(*args, **kwargs)

    monkeypatch.setattr(body, "forward", spy)
    _sample(generator, ["a star", "a circle"], SamplingConfig(cfg=1.0), [0, 1])
    assert set(rows_seen) == {2}
    rows_seen.clear()
    _sample(generator, ["a star", "a circle"], SamplingConfig(cfg=4.0), [0, 1])
    assert set(rows_seen) == {4}


def test_filters_keep_the_top_k_and_the_nucleus() -> None:
    logits = torch.log(torch.tensor([[0.5, 0.3, 0.15, 0.05]]))
    kept = filter_logits(logits, top_k=2, top_p=1.0).isfinite()
    assert kept.tolist() == [[True, True, False, False]]
    assert filter_logits(logits, None, 0.7).isfinite().tolist() == [[True, True, False, False]]
    assert filter_logits(logits, None, 0.5).isfinite().tolist() == [[True, False, False, False]]
    assert filter_logits(logits, None, 0.81).isfinite().tolist() == [[True, True, True, False]]
    gens = [torch.Generator().manual_seed(s) for s in range(64)]
    picks = draw(logits.expand(64, 4), SamplingConfig(top_k=1), gens)
    assert picks.tolist() == [0] * 64  # top-k 1 is greedy
    picks = draw(logits.expand(64, 4), SamplingConfig(top_k=3), gens)
    assert set(picks.tolist()) <= {0, 1, 2} and len(set(picks.tolist())) > 1


def test_sampling_config_rejects_bad_values() -> None:
    with pytest.raises(ValueError, match="cfg"):
        SamplingConfig(cfg=-1)
    with pytest.raises(ValueError, match="top_p"):
        SamplingConfig(top_p=0)
    with pytest.raises(ValueError, match="temperature"):
        SamplingConfig(temperature=-0.5)
