"""Item vectors read out of a decoder LLM, and `LlmDenseRetriever` ("llm_dense"): `dense` over those vectors.

A sentence embedder (`llmrec.retrieval.embeddings.ItemEncoder`) knows little about films; a larger decoder
knows who directed what (the catalogue-knowledge probe). `DecoderItemEncoder` reads an item vector out of a
decoder with a prompt-based read-out (PromptEOL: the prompt asks for the item "in one word", and the hidden state
of the last prompt token, after the final norm, is the vector), L2-normalised. Items are described by
`FactTexts`: title, year, genres and KG facts (other films by the same director, sequels).

The vectors are cached like the MiniLM embeddings (`llmrec.retrieval.embeddings.embed_items`: written atomically,
keyed on the encoder's `key` and the items' texts); the key names the model, the resolved weight dtype, the
read-out version and the prompt. Scoring is `DenseRetriever`'s (recency-weighted similarity to the history).

Example:
    >>> retriever = LlmDenseRetriever.build(dataset)  # doctest: +SKIP
    >>> retriever.retrieve(["50", "172", "181"], k=5)  # doctest: +SKIP
"""

from __future__ import annotations

import hashlib
import logging
import os
import time
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from llmrec.errors import ConfigError
from llmrec.knowledge.graph import KnowledgeGraph
from llmrec.knowledge.selection import item_name
from llmrec.models.config import DTYPES, ModelConfig
from llmrec.models.loading import MODEL_ASSETS, LoadedModel, load_model
from llmrec.models.machine import resolve_dtype
from llmrec.retrieval.dense import DenseRetriever
from llmrec.retrieval.embeddings import item_text, model_key
from llmrec.retrieval.index import IndexConfig
from llmrec.types import Item

if TYPE_CHECKING:
    from llmrec.data.dataset import Dataset

log = logging.getLogger(__name__)

#: The decoder `llm_dense` reads items with by default: the first one here that knows the catalogue (issue 30's
#: probe: director AUC 0.651, sequel 0.957).
DEFAULT_MODEL = "qwen2.5-coder-1.5b"
#: `llm_dense`'s read-out of the default model, chosen on ml-100k validation targets among layers 14, 18, 21, 24
#: and the last, last-token or mean pooling, raw or centred (eval/results/ml100k-llm-items-valid): the hidden state
#: after decoder layer 18 of 28, the last prompt token's, centred. Another model needs its own layer (-1: the last).
DEFAULT_LAYER = 18
#: The read-out prompt; ``{text}`` is the item's text. It ends inside an open quote, so the last token's state is
#: the model's summary of the item just before it would name it in one word (PromptEOL).
PROMPT = 'Movie: "{text}"\nThis movie in one word: "'
#: Bump when the same model, prompt and texts give other vectors (pooling, padding, normalisation).
READOUT_VERSION = 1
#: How many other films by the same director an item's text names.
SAME_DIRECTOR = 2
#: How a read-out pools a layer's token states: the last prompt token's, or their mean over the prompt.
POOLINGS = ("last", "mean")
#: How many batches between progress log lines when no progress bar is shown.
_LOG_EVERY = 20


class FactTexts:
    """Item texts with KG facts, for one catalogue: ``"Fargo (1996). Genres: Crime, Drama, Thriller. Same director
    as Raising Arizona (1987), Blood Simple (1984). Sequel to X (1990)."``

    The KG of the bundled datasets names films, not people (its entities are Freebase ids without names), so a
    director is named by his other films, as the catalogue-knowledge probe states facts: the `same_director` ones
    with the most KG facts (the best documented, a stand-in for the best known). Sequel/prequel links name the
    linked film. Items without facts get `item_text`.

    Args:
        kg: the dataset's knowledge graph (`KnowledgeGraph.from_dataset`), or None for plain `item_text`.
        items: the catalogue, by id.
        same_director: how many other films by the same director to name.
    """

    def __init__(self, kg: KnowledgeGraph | None, items: Mapping[str, Item], *, same_director: int = SAME_DIRECTOR):
        self.kg = kg
        self.items = items
        self.same_director = same_director
        self._by_director: dict[str, list[str]] = {}
        if kg is not None:
            for item_id in sorted(items):
                for attr in kg.attributes(item_id):
                    if attr.kind.name == "director":
                        self._by_director.setdefault(attr.entity, []).append(item_id)

    def _known(self, item_id: str) -> tuple[int, str]:
        assert self.kg is not None
        return -len(self.kg.attributes(item_id)), item_id

    def __call__(self, item: Item) -> str:
        text = item_text(item)
        if self.kg is None:
            return text
        attrs = self.kg.attributes(item.item_id)
        own = item.display_name
        others = {o for a in attrs if a.kind.name == "director" for o in self._by_director.get(a.entity, ())}
        names: list[str] = []
        for other in sorted(others, key=self._known):
            name = item_name(other, self.items)
            if other != item.item_id and name != own and name not in names:
                names.append(name)
        if names[: self.same_director]:
            text += " Same director as " + ", ".join(names[: self.same_director]) + "."
        for kind, phrase in (("sequel_to", "Sequel to"), ("prequel_of", "Prequel of")):
            linked = sorted(
                {item_name(i, self.items) for a in attrs if a.kind.name == kind
                 for i in [self.kg.linked_item(a.entity)] if i is not None and i in self.items and i != item.item_id}
            )
            if linked:
                text += f" {phrase} {', '.join(linked[:2])}."
        return text


class DecoderItemEncoder:
    """Item vectors from a decoder LLM's last-token hidden state after `prompt`; the model is loaded on first use.

    Args:
        model: a decoder asset name (default ``qwen2.5-coder-1.5b``), a local transformers folder or a hub id.
        dtype: weight dtype (`llmrec.models.config.ModelConfig.dtype`); ``"auto"`` is resolved now (bfloat16 on a
            CPU that measures it faster), and the resolved dtype is part of `key`.
        batch_size: items per forward pass (left-padded; items are batched by length).
        prompt: the read-out prompt, with one ``{text}`` field.
        layer: which hidden state: -1 the last (after the final norm), else its index (0: the embeddings, i: after
            decoder layer i).
        pooling: ``"last"`` (the last prompt token's state, PromptEOL) or ``"mean"`` (averaged over the prompt).

    Attributes:
        key: names the vectors in caches and index metadata: model, resolved dtype, read-out version, prompt hash.
    """

    def __init__(
        self, model: str | os.PathLike[str] = DEFAULT_MODEL, *, dtype: str = "auto", batch_size: int = 8,
        prompt: str = PROMPT, layer: int = -1, pooling: str = "last",
    ) -> None:
        name = str(model)
        if not name.strip():
            raise ConfigError("model must be a decoder asset name, a folder or a hub id, got an empty string")
        if dtype not in DTYPES:
            raise ConfigError(f"dtype must be one of {DTYPES}, got {dtype!r}")
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size <= 0:
            raise ConfigError(f"batch_size must be a positive integer, got {batch_size!r}")
        if not isinstance(prompt, str) or prompt.count("{text}") != 1:
            raise ConfigError(f"prompt must contain '{{text}}' exactly once, got {prompt!r}")
        import torch

        self.dtype = resolve_dtype(dtype, on_gpu=bool(torch.cuda.is_available())).dtype
        self.config = ModelConfig(name, dtype=self.dtype)
        self.batch_size = batch_size
        self.prompt = prompt
        prompt_hash = hashlib.sha256(prompt.encode()).hexdigest()[:8]
        _check_readout(layer, pooling)
        self.layer, self.pooling = layer, pooling
        self.key = f"decoder:{model_key(name, MODEL_ASSETS)}:{self.dtype}:readout{READOUT_VERSION}:{prompt_hash}"
        if (layer, pooling) != (-1, "last"):
            self.key += f":layer{layer}:{pooling}"
        self._loaded: LoadedModel | None = None

    @property
    def loaded(self) -> LoadedModel:
        if self._loaded is None:
            self._loaded = load_model(self.config)
        return self._loaded

    def encode(self, texts: Sequence[str], *, progress: bool = True) -> np.ndarray:
        """L2-normalised float32 vectors of `texts` (one row each, in order): the decoder's hidden state of
        `layer` at the last token of the prompt around each text (`pooling` "last") or averaged over its tokens
        ("mean")."""
        return self.read_out(texts, [(self.layer, self.pooling)], progress=progress)[(self.layer, self.pooling)]

    def read_out(
        self, texts: Sequence[str], variants: Sequence[tuple[int, str]], *, progress: bool = True
    ) -> dict[tuple[int, str], np.ndarray]:
        """`encode`'s vectors for several (layer, pooling) read-outs from one pass over `texts`: what
        ``DecoderItemEncoder(..., layer=L, pooling=P).encode(texts)`` gives, for each (L, P)."""
        import torch

        if len(texts) == 0:
            raise ConfigError("nothing to encode: the list of texts is empty")
        lm = self.loaded
        tokenizer, model = lm.tokenizer, lm.model
        n_layers = int(model.config.num_hidden_layers)
        for layer, pooling in variants:
            _check_readout(layer, pooling)
            if layer > n_layers:
                raise ConfigError(f"layer must be -1 or 0..{n_layers} for this model, got {layer}")
        hidden_layers = any(layer not in (-1, n_layers) for layer, _ in variants)
        prompts = [self.prompt.format(text=t) for t in texts]
        # split_special_tokens: a title that spells a chat token ("<|im_end|>") is text, not a control token
        token_ids = [tokenizer(p, add_special_tokens=False, split_special_tokens=True)["input_ids"] for p in prompts]
        order = sorted(range(len(prompts)), key=lambda i: (len(token_ids[i]), i))
        batches = [order[s : s + self.batch_size] for s in range(0, len(order), self.batch_size)]
        decoder = _decoder_body(model)
        pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
        out: dict[tuple[int, str], np.ndarray] = {}
        bar = _progress_bar(len(texts), progress)
        started = time.perf_counter()
        with torch.inference_mode():
            for b, batch in enumerate(batches):
                width = max(len(token_ids[i]) for i in batch)
                ids = torch.full((len(batch), width), pad, dtype=torch.long)
                mask = torch.zeros((len(batch), width), dtype=torch.long)
                for row, i in enumerate(batch):
                    seq = token_ids[i]
                    ids[row, width - len(seq) :] = torch.tensor(seq, dtype=torch.long)  # left padding
                    mask[row, width - len(seq) :] = 1
                positions = (mask.cumsum(-1) - 1).clamp(min=0)  # each item's positions as if unpadded
                result = decoder(
                    input_ids=ids.to(lm.device), attention_mask=mask.to(lm.device),
                    position_ids=positions.to(lm.device), use_cache=False, output_hidden_states=hidden_layers,
                )
                weights = mask.to(lm.device).unsqueeze(-1).float()
                for layer, pooling in variants:
                    states = (
                        result.last_hidden_state if layer in (-1, n_layers) else result.hidden_states[layer]
                    ).float()
                    if pooling == "last":
                        pooled = states[:, -1, :]
                    else:
                        pooled = (states * weights).sum(1) / weights.sum(1).clamp(min=1.0)
                    rows = pooled.cpu().numpy()
                    if (layer, pooling) not in out:
                        out[(layer, pooling)] = np.zeros((len(texts), rows.shape[1]), dtype=np.float32)
                    out[(layer, pooling)][batch] = rows
                if bar is not None:
                    bar.update(len(batch))
                elif (b + 1) % _LOG_EVERY == 0 or b + 1 == len(batches):
                    done = sum(len(x) for x in batches[: b + 1])
                    log.info("read out %d / %d items (%.0f s)", done, len(texts), time.perf_counter() - started)
        if bar is not None:
            bar.close()
        return {
            variant: np.ascontiguousarray(v / np.maximum(np.linalg.norm(v, axis=1, keepdims=True), 1e-12), dtype=np.float32)
            for variant, v in out.items()
        }


def _check_readout(layer: int, pooling: str) -> None:
    if isinstance(layer, bool) or not isinstance(layer, int) or layer < -1:
        raise ConfigError(f"layer must be -1 (the last, after the final norm) or a hidden-state index >= 0, got {layer!r}")
    if pooling not in POOLINGS:
        raise ConfigError(f"pooling must be one of {POOLINGS}, got {pooling!r}")


def centered(vectors: np.ndarray) -> np.ndarray:
    """`vectors` minus their mean row, L2-normalised again (an all-equal catalogue stays as it is)."""
    out = vectors.astype(np.float64) - vectors.astype(np.float64).mean(axis=0, keepdims=True)
    norms = np.linalg.norm(out, axis=1, keepdims=True)
    if float(norms.max(initial=0.0)) < 1e-9:
        return np.ascontiguousarray(vectors, dtype=np.float32)
    return np.ascontiguousarray(out / np.maximum(norms, 1e-12), dtype=np.float32)


def _decoder_body(model: Any) -> Any:
    """The transformer body of a causal LM (its hidden states without the output head, which would cost a
    vocabulary-wide projection per token)."""
    getter = getattr(model, "get_decoder", None)
    body = getter() if getter is not None else None
    if body is None:
        body = getattr(model, "model", None)
    if body is None:
        raise ConfigError(f"cannot find the decoder body of {type(model).__name__} to read hidden states from")
    return body


def _progress_bar(total: int, progress: bool) -> Any:
    if not progress:
        return None
    try:
        from tqdm.auto import tqdm
    except ImportError:  # pragma: no cover - tqdm comes with transformers
        return None
    return tqdm(total=total, desc="llm item vectors", unit="item")


class LlmDenseRetriever(DenseRetriever):
    """`dense` over decoder item vectors (`DecoderItemEncoder`). Build it with `LlmDenseRetriever.build`."""

    name = "llm_dense"

    @classmethod
    def build(  # type: ignore[override]
        cls,
        dataset: Dataset,
        model: str | os.PathLike[str] = DEFAULT_MODEL,
        *,
        dtype: str = "auto",
        facts: bool = True,
        center: bool = True,
        layer: int = DEFAULT_LAYER,
        pooling: str = "last",
        index: IndexConfig | str | None = None,
        history_len: int = 10,
        recency_decay: float = 0.9,
        batch_size: int = 8,
        use_cache: bool = True,
        cache_dir: str | os.PathLike[str] | None = None,
        progress: bool = True,
    ) -> LlmDenseRetriever:
        """Read the catalogue's item vectors out of `model` (or the cache) and index them.

        Args:
            dataset: its items (and their KG facts) are the catalogue; its interactions feed the popularity fallback.
            model, dtype, batch_size, layer, pooling: the decoder, how it runs and what is read out
                (`DecoderItemEncoder`); the default read-out (`DEFAULT_LAYER`, last token, centred) is the one
                chosen for the default model: give `layer` (e.g. -1) for another model.
            facts: describe items with their KG facts (`FactTexts`); False: title, year and genres only.
            center: subtract the catalogue's mean vector before normalising (`centered`): a decoder's last-token
                states share a large common direction (the prompt's), which dominates the raw cosines.
            index, history_len, recency_decay, use_cache, cache_dir, progress: as `DenseRetriever.build`.
        """
        encoder = DecoderItemEncoder(model, dtype=dtype, batch_size=batch_size, layer=layer, pooling=pooling)
        kg = KnowledgeGraph.from_dataset(dataset, metadata=False) if facts else None
        text_fn: Callable[[Item], str] = FactTexts(kg, dataset.items)
        retriever = cls.from_encoder(
            dataset,
            encoder,
            text_fn=text_fn,
            index=index,
            history_len=history_len,
            recency_decay=recency_decay,
            use_cache=use_cache,
            cache_dir=cache_dir,
            progress=progress,
            transform=centered if center else None,
        )
        assert isinstance(retriever, LlmDenseRetriever)
        return retriever
