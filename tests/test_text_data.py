"""Federated text data: generated non-IID corpus, user text by speaker/file/parquet, tokens."""

from __future__ import annotations

import numpy as np
import pytest

from simulator import InputError
from simulator.config.scenario import parse_scenario
from simulator.data.text import (
    CharVocab,
    build_text_dataset,
    load_user_texts,
    split_speakers,
    windows,
)
from tests.conftest import SHARED_DATA, small_doc

SHAKESPEARE = SHARED_DATA / "tinyshakespeare.txt"

PLAY = """ALICE:
Good morrow, Bob.
How fare you?

BOB:
Well enough.

ALICE:
I am glad: truly glad.

CAROL:
Hush.
"""


def _scenario(data: dict, size: int = 200, **over):
    doc = small_doc(**{"data": {"dataset": "text", **data}, "model.seq_len": 64, **over})
    doc["population"]["size"] = size
    doc["clients_per_round"] = min(doc["clients_per_round"], size)
    return parse_scenario(doc)


def test_generated_is_deterministic_lazy_and_shaped():
    sc = _scenario({"partition": "natural", "samples_per_client": 12})
    a, b = build_text_dataset(sc, 200), build_text_dataset(sc, 200)
    assert a.kind == "text" and a.n_features == 64 and a.n_classes == len(a.vocab)
    xa, ya = a.client_data(17)
    xb, yb = b.client_data(17)
    assert np.array_equal(xa, xb) and np.array_equal(ya, yb)
    assert xa.shape == (a.n_samples[17], 64) and xa.dtype == np.int64
    seq = a.client_sequences(17)
    assert np.array_equal(xa, seq[:, :-1]) and np.array_equal(ya, seq[:, 1:])
    assert not np.array_equal(a.client_data(18)[0][:1], xa[:1])
    # Any population size: a million clients cost one size column until a client is read.
    big = build_text_dataset(sc, 1_000_000)
    assert big.n_samples.shape == (1_000_000,) and big.client_data(999_999)[0].shape[1] == 64
    xt, yt = a.test_data()
    assert xt.shape == (256, 64) and np.array_equal(xt[:, 1:], yt[:, :-1])


def _unigram(ds, cid):
    x = ds.client_sequences(cid).ravel()
    return np.bincount(x, minlength=ds.n_classes) / x.size


def test_generated_natural_split_is_non_iid():
    nat = build_text_dataset(_scenario({"partition": "natural", "alpha": 0.1,
                                        "samples_per_client": 40}), 50)
    iid = build_text_dataset(_scenario({"partition": "iid", "samples_per_client": 40}), 50)

    def spread(ds):
        u = np.stack([_unigram(ds, c) for c in range(30)])
        return np.abs(u - u.mean(0)).sum(1).mean()

    assert spread(nat) > 2 * spread(iid)
    mixes = np.stack([nat.style_mix(c) for c in range(30)])
    assert (mixes.max(1) > 0.5).mean() > 0.6  # most clients write mainly in one style


def test_char_vocab_is_sorted_and_round_trips():
    v = CharVocab("hello world\n")
    assert v.chars == "\n dehlorw"
    ids = v.encode("hello")
    assert v.decode(ids) == "hello"
    with pytest.raises(InputError, match="not in the vocabulary"):
        v.encode("hex!")


def test_windows_overlap_by_one_token():
    w = windows(np.arange(10), 3)
    assert w.tolist() == [[0, 1, 2, 3], [3, 4, 5, 6], [6, 7, 8, 9]]
    assert windows(np.arange(3), 3).shape == (0, 4)


def test_split_speakers_groups_speeches_by_role():
    roles = split_speakers(PLAY)
    assert list(roles) == ["ALICE", "BOB", "CAROL"]
    assert roles["ALICE"] == "Good morrow, Bob.\nHow fare you?\nI am glad: truly glad.\n"
    assert roles["CAROL"] == "Hush.\n"


def test_speaker_file_gives_one_client_per_role(tmp_path):
    play = tmp_path / "play.txt"
    play.write_text("\n".join([PLAY] * 40))
    sc = _scenario({"partition": "natural", "path": str(play), "test_fraction": 0.25}, size=3,
                   **{"model.kind": "mlp"})
    ds = build_text_dataset(sc, 3)
    assert ds.names == ["ALICE", "BOB", "CAROL"]
    text = ds.vocab.decode(ds.client_sequences(0).ravel())
    assert "morrow" in text and "Hush" not in text
    # Two clients keep the two roles with the most text, in file order.
    assert build_text_dataset(sc, 2).names == ["ALICE", "BOB"]
    with pytest.raises(InputError) as err:
        build_text_dataset(sc, 4)
    assert err.value.field == "population.size" and "3 speaking roles" in str(err.value)


def test_plain_text_needs_iid_and_iid_serves_any_population(tmp_path):
    f = tmp_path / "plain.txt"
    f.write_text("just some plain text without any speakers. " * 200)
    sc = _scenario({"partition": "natural", "path": str(f)})
    with pytest.raises(InputError, match="SPEAKER"):
        build_text_dataset(sc, 10)
    ds = build_text_dataset(_scenario({"partition": "iid", "path": str(f),
                                       "samples_per_client": 5}), 500)
    assert len(ds.n_samples) == 500 and ds.client_data(499)[0].shape[1] == 64


def test_directory_and_parquet_sources(tmp_path):
    d = tmp_path / "clients"
    d.mkdir()
    for i, word in enumerate(["alpha ", "beta ", "gamma "]):
        (d / f"{i:02d}.txt").write_text(word * 100)
    names, texts, layout = load_user_texts(d)
    assert layout == "directory" and names == ["00.txt", "01.txt", "02.txt"]
    ds = build_text_dataset(_scenario({"partition": "natural", "path": str(d)}, size=3), 3)
    assert "beta" in ds.vocab.decode(ds.client_sequences(1)[0])

    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    pq.write_table(pa.table({"client_id": [7, 3, 7], "text": ["x" * 300, "y" * 300, "z" * 300]}),
                   tmp_path / "t.parquet")
    names, texts, layout = load_user_texts(tmp_path / "t.parquet")
    assert names == ["3", "7"] and texts[1] == "x" * 300 + "\n" + "z" * 300 + "\n"
    pq.write_table(pa.table({"user": [1], "body": ["a"]}), tmp_path / "bad.parquet")
    with pytest.raises(InputError, match="client_id, text"):
        load_user_texts(tmp_path / "bad.parquet")


def test_bad_partition_for_user_text(tmp_path):
    f = tmp_path / "play.txt"
    f.write_text("\n".join([PLAY] * 40))
    with pytest.raises(InputError) as err:
        build_text_dataset(_scenario({"partition": "dirichlet", "path": str(f)}, size=3), 3)
    assert err.value.field == "data.partition"


@pytest.mark.skipif(not SHAKESPEARE.exists(), reason="shared tinyshakespeare.txt not present")
def test_tinyshakespeare_split_by_speaking_role():
    sc = _scenario({"partition": "natural", "path": str(SHAKESPEARE)}, size=100)
    ds = build_text_dataset(sc, 100)
    assert len(ds.names) == 100 and "GLOUCESTER" in ds.names and ds.n_classes == 65
    assert ds.n_samples.max() == 256 and ds.n_samples.min() >= 1
    roles = split_speakers(SHAKESPEARE.read_text())
    assert len(roles) > 250  # distinct speaker names in the file


def test_path_source_without_path_is_a_validation_error():
    from simulator.config.scenario import ScenarioError

    doc = small_doc(data={"dataset": "text", "text": {"source": "path"}})
    with pytest.raises(ScenarioError, match="data.path: required"):
        parse_scenario(doc)
