"""Federated next-token text data (numpy only): a generated non-IID corpus or the user's own text.

Every client holds sequences of ``seq_len + 1`` character tokens (inputs ``x = seq[:-1]``,
targets ``y = seq[1:]``); ``n_samples[c]`` counts sequences. Sources:

* **generated** (default): a word-level Markov corpus rendered as characters. A lexicon of
  pseudo-words and ``styles`` writing styles (each a bigram chain mixing a shared grammar with its
  own preferences, sentence lengths and punctuation) are drawn from the scenario seed; client ``c``
  writes with a style mixture drawn from ``(seed, c)``: Dirichlet(``data.alpha``) for ``natural``
  and ``dirichlet`` partitions (a few dominant styles, like authors), ``shards_per_client`` styles
  for ``shards``, all styles for ``iid``. Any number of clients; nothing is stored.
* **path** (``data.path``): a text file in the ``SPEAKER:`` play format split by speaking role, as
  LEAF's Shakespeare benchmark (Caldas et al. 2018, "LEAF: A Benchmark for Federated Settings") -
  one client per role; a directory with one file per client; or a parquet file with ``client_id,
  text`` columns (one client per distinct id, rows concatenated). With ``partition: natural``
  there are exactly as many clients as roles/files/ids: a population larger than that is an error
  (cycling roles would duplicate data and fake the non-IID statistics), a smaller one keeps the
  clients with the most text. ``partition: iid`` pools all text and lets any number of clients
  sample windows from it. The last ``test_fraction`` of each natural client's text is held out
  (LEAF's per-user split); the test set is capped at ``data.text.test_sequences`` sequences.

Tokenisation is character-level: the vocabulary is the sorted set of characters in the corpus
(the fixed generator alphabet for generated text), so it is the same on every host.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np

from simulator import InputError
from simulator.core import rng as rngmod
from simulator.data.partition import PartitionSpec, partition_spec, partitioner
from simulator.data.sizes import data_sizes

DEFAULT_SEQ_LEN = 64
MAX_VOCAB = 4096
GEN_ALPHABET = "\n !,.?abcdefghijklmnopqrstuvwxyz"
_SPEAKER = re.compile(r"^([A-Z][A-Za-z0-9 ,.'&-]{0,60}):\s*$")
_TEST_KEY = 10_000_000_000  # virtual client ids for the generated test set


class CharVocab:
    """A deterministic character vocabulary (sorted characters)."""

    def __init__(self, chars: str) -> None:
        self.chars = "".join(sorted(set(chars)))
        if len(self.chars) > MAX_VOCAB:
            raise InputError("data.path", f"the text has {len(self.chars)} distinct characters "
                             f"(at most {MAX_VOCAB} for character-level tokens)")
        self._lut = np.full(0x110000 if self.chars and max(map(ord, self.chars)) > 0xFFFF
                            else 0x10000, -1, np.int32)
        self._lut[[ord(c) for c in self.chars]] = np.arange(len(self.chars), dtype=np.int32)

    def __len__(self) -> int:
        return len(self.chars)

    def encode(self, text: str) -> np.ndarray:
        """int16/int32 token ids; characters outside the vocabulary are an error."""
        codes = np.frombuffer(text.encode("utf-32-le"), np.uint32).astype(np.int64)
        ids = self._lut[np.minimum(codes, len(self._lut) - 1)]
        if ids.size and ids.min() < 0:
            bad = text[int(np.flatnonzero(ids < 0)[0])]
            raise InputError("data.path", f"character {bad!r} is not in the vocabulary")
        return ids.astype(np.int32)

    def decode(self, ids: np.ndarray) -> str:
        return "".join(self.chars[int(i)] for i in ids)


def windows(tokens: np.ndarray, seq_len: int) -> np.ndarray:
    """Non-overlapping next-token windows [n, seq_len + 1] (consecutive windows share one token)."""
    n = max(0, (len(tokens) - 1) // seq_len)
    if n == 0:
        return np.zeros((0, seq_len + 1), np.int64)
    idx = np.arange(n)[:, None] * seq_len + np.arange(seq_len + 1)[None, :]
    return tokens[idx].astype(np.int64)


# --- generated corpus ---------------------------------------------------------------------------
class StyleCorpus:
    """Word-bigram writing styles over a pseudo-word lexicon, all drawn from the seed."""

    def __init__(self, seed: int, n_styles: int, n_words: int, strength: float = 0.7) -> None:
        g = rngmod.stream(seed, rngmod.DATASET, 2)
        cons, vows = "bcdfghjklmnprstvwz", "aeiou"
        words: list[str] = []
        while len(words) < n_words:
            syl = int(g.integers(1, 4))
            word = "".join(cons[g.integers(len(cons))] + vows[g.integers(len(vows))]
                           for _ in range(syl))
            if g.random() < 0.4:
                word += cons[g.integers(len(cons))]
            if word not in words:
                words.append(word)
        self.words = np.array(words, dtype=object)
        w = n_words
        # Shared grammar: every word has a few likely successors (sparse Dirichlet rows).
        base = np.zeros((w, w))
        for i in range(w):
            nxt = g.choice(w, size=min(4, w), replace=False)
            base[i, nxt] = g.dirichlet(np.ones(len(nxt)))
        self.trans = np.zeros((n_styles, w, w))
        self.start = np.zeros((n_styles, w))
        self.sent_len = np.zeros(n_styles)
        self.comma = np.zeros(n_styles)
        self.end_p = np.zeros((n_styles, 3))
        self.newline = np.zeros(n_styles)
        for s in range(n_styles):
            own = np.zeros((w, w))
            favourite = g.choice(w, size=max(2, w // 4), replace=False)  # the style's vocabulary
            for i in range(w):
                nxt = g.choice(favourite, size=min(3, len(favourite)), replace=False)
                own[i, nxt] = g.dirichlet(np.ones(len(nxt)))
            t = (1 - strength) * base + strength * own
            self.trans[s] = t / t.sum(1, keepdims=True)
            st = np.full(w, 0.1 / w)
            st[favourite] += 0.9 / len(favourite)
            self.start[s] = st / st.sum()
            self.sent_len[s] = g.uniform(3.0, 9.0)
            self.comma[s] = g.uniform(0.0, 0.15)
            self.end_p[s] = g.dirichlet([4.0, 1.0, 1.0])
            self.newline[s] = g.uniform(0.1, 0.6)
        self._cum_trans = np.cumsum(self.trans, axis=2)
        self._cum_start = np.cumsum(self.start, axis=1)

    def text(self, mix: np.ndarray, n_chars: int, g: np.random.Generator) -> str:
        """At least ``n_chars`` characters; each sentence picks a style from ``mix``."""
        out: list[str] = []
        size = 0
        ends = ".?!"
        while size < n_chars:
            s = int(g.choice(len(mix), p=mix))
            length = 1 + int(g.poisson(self.sent_len[s]))
            wi = int(np.searchsorted(self._cum_start[s], g.random() * self._cum_start[s, -1]))
            parts = [str(self.words[wi])]
            for _ in range(length - 1):
                row = self._cum_trans[s, wi]
                wi = min(int(np.searchsorted(row, g.random() * row[-1])), len(row) - 1)
                sep = ", " if g.random() < self.comma[s] else " "
                parts.append(sep + str(self.words[wi]))
            sent = "".join(parts)
            sent += ends[int(g.choice(3, p=self.end_p[s]))]
            sent += "\n" if g.random() < self.newline[s] else " "
            out.append(sent)
            size += len(sent)
        return "".join(out)


# --- user text ----------------------------------------------------------------------------------
def split_speakers(text: str) -> dict[str, str]:
    """``SPEAKER:`` play text -> {role: its speeches joined by newlines}, in order of appearance.

    A speaker line is a capitalised name followed by ':' alone on a line, after a blank line (or
    at the start); the speech runs to the next blank line.
    """
    roles: dict[str, list[str]] = {}
    cur: str | None = None
    prev_blank = True
    for line in text.splitlines():
        blank = not line.strip()
        m = _SPEAKER.match(line) if prev_blank else None
        if m:
            cur = m.group(1).strip()
            roles.setdefault(cur, [])
        elif blank:
            cur = None
        elif cur is not None:
            roles[cur].append(line)
        prev_blank = blank
    return {r: "\n".join(lines) + "\n" for r, lines in roles.items() if lines}


def _read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise InputError("data.path", f"'{path}' is not UTF-8 text") from None
    except OSError as exc:
        raise InputError("data.path", f"cannot read '{path}' ({exc.strerror})") from None


def load_user_texts(path: str | Path) -> tuple[list[str], list[str], str]:
    """(client names, client texts, layout) from a play file, a directory or a parquet file."""
    p = Path(path)
    if not p.exists():
        raise InputError("data.path", f"file not found: '{p}'")
    if p.is_dir():
        files = sorted(f for f in p.iterdir() if f.is_file() and not f.name.startswith("."))
        if not files:
            raise InputError("data.path",
                             f"directory '{p}' has no files (one text file per client)")
        return [f.name for f in files], [_read_text(f) for f in files], "directory"
    if p.suffix.lower() in (".parquet", ".pq"):
        import pyarrow.parquet as pq  # a project dependency; imported only for parquet input

        try:
            table = pq.read_table(p, columns=["client_id", "text"])
        except (KeyError, ValueError) as exc:
            raise InputError("data.path", f"'{p}' needs columns client_id, text ({exc})") from None
        except OSError as exc:
            raise InputError("data.path", f"cannot read parquet '{p}' ({exc})") from None
        ids = np.asarray(table.column("client_id").to_pylist(), dtype=object)
        texts = table.column("text").to_pylist()
        keys = sorted({str(i) for i in ids})
        grouped: dict[str, list[str]] = {k: [] for k in keys}
        for i, t in zip(ids, texts, strict=True):
            if t is not None:
                grouped[str(i)].append(str(t))
        return keys, ["\n".join(grouped[k]) + "\n" for k in keys], "parquet"
    text = _read_text(p)
    roles = split_speakers(text)
    if len(roles) >= 2:
        return list(roles), list(roles.values()), "speakers"
    return [p.name], [text], "plain"


# --- the dataset ----------------------------------------------------------------------------------
class TextDataset:
    """Lazy per-client token windows; ``client_data(c) -> (x, y)`` int64 [n, seq_len] each."""

    kind = "text"

    def __init__(self, vocab: CharVocab, seq_len: int, n_samples: np.ndarray, seed: int,
                 test_sequences: int) -> None:
        self.vocab = vocab
        self.seq_len = seq_len
        self.n_features = seq_len
        self.n_classes = len(vocab)
        self.n_samples = np.asarray(n_samples, np.int64)
        self.seed = seed
        self.test_sequences = test_sequences
        self._test: np.ndarray | None = None

    def client_sequences(self, cid: int) -> np.ndarray:  # pragma: no cover - abstract
        raise NotImplementedError

    def _test_sequences(self) -> np.ndarray:  # pragma: no cover - abstract
        raise NotImplementedError

    def client_data(self, cid: int) -> tuple[np.ndarray, np.ndarray]:
        seq = self.client_sequences(int(cid))
        return seq[:, :-1], seq[:, 1:]

    def test_data(self) -> tuple[np.ndarray, np.ndarray]:
        if self._test is None:
            self._test = self._test_sequences()
        return self._test[:, :-1], self._test[:, 1:]


class GeneratedText(TextDataset):
    """The built-in corpus: client text generated from (seed, client) on demand."""

    def __init__(self, corpus: StyleCorpus, mix_kind: str, alpha: float, shards: int,
                 seq_len: int, n_samples: np.ndarray, seed: int, test_sequences: int,
                 partition_params: Any = None) -> None:
        super().__init__(CharVocab(GEN_ALPHABET), seq_len, n_samples, seed, test_sequences)
        self.corpus = corpus
        self.mix_kind, self.alpha, self.shards = mix_kind, alpha, shards
        self._spec = PartitionSpec(mix_kind, alpha, shards, partition_params)
        self._mix = partitioner(self._spec)  # data.partition: a client's mix over the styles

    def style_mix(self, key: int) -> np.ndarray:
        g = rngmod.stream(self.seed, rngmod.PARTITION, 3, key)
        s = len(self.corpus.sent_len)
        return np.asarray(self._mix(g, np.ones(s), self._spec), dtype=np.float64)

    def _generate(self, key: int, n: int) -> np.ndarray:
        g = rngmod.stream(self.seed, rngmod.DATASET, 3, key)
        text = self.corpus.text(self.style_mix(key), n * self.seq_len + 1, g)
        return windows(self.vocab.encode(text), self.seq_len)[:n]

    def client_sequences(self, cid: int) -> np.ndarray:
        return self._generate(cid, int(self.n_samples[cid]))

    def _test_sequences(self) -> np.ndarray:
        per = max(1, -(-self.test_sequences // 32))
        parts = [self._generate(_TEST_KEY + j, per) for j in range(32)]
        return np.concatenate(parts)[: self.test_sequences]


class UserText(TextDataset):
    """The user's text: one client per role/file/id (natural) or windows pooled (iid)."""

    def __init__(self, names: list[str], train: list[np.ndarray], test: np.ndarray,
                 vocab: CharVocab, seq_len: int, n_samples: np.ndarray, seed: int,
                 test_sequences: int, pooled: bool, max_sequences: int) -> None:
        super().__init__(vocab, seq_len, n_samples, seed, test_sequences)
        self.names = names
        self._train = train  # natural: per-client windows; pooled: [one array of all windows]
        self._test_pool = test
        self.pooled = pooled
        self.max_sequences = max_sequences

    def client_sequences(self, cid: int) -> np.ndarray:
        g = rngmod.stream(self.seed, rngmod.PARTITION, 4, cid)
        n = int(self.n_samples[cid])
        if self.pooled:
            pool = self._train[0]
            return pool[np.sort(g.choice(len(pool), size=n, replace=n > len(pool)))]
        w = self._train[cid]
        if len(w) <= n:
            return w
        return w[np.sort(g.choice(len(w), size=n, replace=False))]

    def _test_sequences(self) -> np.ndarray:
        t = self._test_pool
        if len(t) <= self.test_sequences:
            return t
        g = rngmod.stream(self.seed, rngmod.DATASET, 4)
        return t[np.sort(g.choice(len(t), size=self.test_sequences, replace=False))]


def _split_tail(tokens: np.ndarray, frac: float, seq_len: int) -> tuple[np.ndarray, np.ndarray]:
    cut = round(len(tokens) * (1.0 - frac))
    return tokens[:cut], tokens[cut:]


def _user_dataset(d: Any, cfg: Any, n: int, seq_len: int, seed: int) -> UserText:
    names, texts, layout = load_user_texts(d.path)
    vocab = CharVocab("".join(texts))
    toks = [vocab.encode(t) for t in texts]
    if d.partition == "iid":
        all_tok = np.concatenate(toks)
        tr, te = _split_tail(all_tok, d.test_fraction, seq_len)
        pool, test = windows(tr, seq_len), windows(te, seq_len)
        if len(pool) == 0:
            raise InputError("data.path", f"the text is too short for seq_len {seq_len}")
        sizes = np.minimum(data_sizes(d, n, seed),
                           cfg.max_sequences)
        return UserText([f"client{i}" for i in range(n)], [pool], test, vocab, seq_len, sizes,
                        seed, cfg.test_sequences, True, cfg.max_sequences)
    if d.partition != "natural":
        raise InputError("data.partition", f"got {d.partition!r}; text from data.path is split "
                         "'natural' (by speaker, file or client_id) or 'iid'")
    if layout == "plain":
        raise InputError("data.path", "no 'SPEAKER:' lines found to split the text by role "
                         "(use partition: iid, a directory with one file per client, or parquet)")
    splits = [_split_tail(t, d.test_fraction, seq_len) for t in toks]
    train = [windows(tr, seq_len) for tr, _ in splits]
    sizes = np.array([len(w) for w in train], np.int64)
    eligible = np.flatnonzero(sizes > 0)
    unit = {"speakers": "speaking roles", "directory": "files", "parquet": "client ids"}[layout]
    if len(eligible) < n:
        raise InputError("population.size", f"{n} clients but '{d.path}' has only "
                         f"{len(eligible)} {unit} with at least {seq_len + 1} training characters "
                         "(one client each; lower population.size or model.seq_len, or use "
                         "partition: iid)")
    # Keep the n clients with the most text (LEAF drops the smallest users), in file order.
    keep = np.sort(eligible[np.argsort(-sizes[eligible], kind="stable")[:n]])
    held = [windows(splits[i][1], seq_len) for i in keep]
    test_all = np.concatenate(held) if held else np.zeros((0, seq_len + 1), np.int64)
    if len(test_all) == 0:
        raise InputError("data.test_fraction", "the held-out text is shorter than one sequence")
    return UserText([names[i] for i in keep], [train[i] for i in keep], test_all, vocab, seq_len,
                    np.minimum(sizes[keep], cfg.max_sequences), seed, cfg.test_sequences, False,
                    cfg.max_sequences)


def text_seq_len(scenario: Any) -> int:
    """Sequence length: ``model.seq_len`` (the model's context) when set, else 64."""
    return int(getattr(scenario.model, "seq_len", None) or DEFAULT_SEQ_LEN)


def build_text_dataset(scenario: Any, population_size: int, params: Any = None) -> TextDataset:
    """The scenario's text dataset for ``population_size`` clients (``data.dataset: text``;
    settings in ``data.text``)."""
    d = scenario.data
    cfg = d.text
    seed = scenario.seed
    seq_len = text_seq_len(scenario)
    source = cfg.source or ("path" if d.path else "generated")
    if source == "path":
        if not d.path:
            raise InputError("data.path", "data.text.source is 'path' but data.path is not set")
        return _user_dataset(d, cfg, population_size, seq_len, seed)
    spec = partition_spec(d)
    corpus = StyleCorpus(seed, cfg.styles, cfg.words)
    sizes = np.minimum(data_sizes(d, population_size, seed),
                       cfg.max_sequences)
    return GeneratedText(corpus, spec.name, spec.alpha, spec.shards_per_client, seq_len, sizes,
                         seed, cfg.test_sequences, spec.params)
