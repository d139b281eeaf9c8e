"""SASRec (Kang & McAuley, 2018): a causal self-attention next-item model, the sequential first stage.

A compact, faithful torch module: learned item and position embeddings, pre-norm transformer blocks with a
causal mask, the output scored against the (tied) item embeddings, full-softmax cross-entropy at every position.
Training is seeded; each user's last training interaction is held out as an early-stopping target (never a test
or validation target of the split); the best epoch's weights are kept. The fitted model is cached under
``$LLMREC_HOME/retrievers/`` in one atomically written file keyed on the training data and the settings, so a
checkpoint made for other training data is never reused.

Example:
    >>> sasrec = SasrecRetriever.fit(split.train_dataset)  # doctest: +SKIP  (about a CPU minute on ml-100k)
    >>> sasrec.retrieve(["172", "181"], k=5)  # doctest: +SKIP
"""

from __future__ import annotations

import functools
import hashlib
import io
import json
import logging
import math
import time
import types
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from llmrec.data.matrix import catalogue_ids
from llmrec.errors import ConfigError
from llmrec.metrics import target_ndcg
from llmrec.retrieval.base import CatalogueRetriever
from llmrec.retrieval.popularity import PopularityRetriever

if TYPE_CHECKING:
    from llmrec.data.dataset import Dataset

log = logging.getLogger(__name__)

#: Bumped when the module or its training changes, so that old checkpoints are refit. 2: early stopping scores the
#: held-out items with `llmrec.metrics`'s tie rule (was: optimistic), which can move the selected epoch. 3: a faster
#: fit (eval/results/bench_sasrec_fit.md): batch 32, lr 2e-3 held then decayed to 0 over 20 epochs (was: batch 128,
#: a constant 1e-3 for up to 200 epochs), the transformer blocks written out (new state-dict names; the same
#: function as before) with a cheaper dropout mask, and the cross-entropy computed in one reused buffer.
FORMAT_VERSION = 3


#: Learning-rate schedules: constant; or one epoch of linear warm-up, then a cosine decay to 0 at `max_epochs`
#: ("cosine"), or constant until the last third of `max_epochs` and a linear decay to 0 over it ("wsd").
SCHEDULES = ("constant", "cosine", "wsd")


@dataclass(frozen=True)
class SasrecSettings:
    """Model shape and training knobs (defaults: the SASRec paper's ml-1m shape, chosen on ml-100k validation).

    Training runs `max_epochs` epochs of Adam at `lr` under `schedule` (see `SCHEDULES`), keeps the epoch with the
    best held-out NDCG@10 and stops early after `patience` epochs without a better one. The defaults (batch 32, lr
    2e-3, "wsd" over 20 epochs) reach the held-out NDCG@10 of the earlier defaults (batch 128, a constant 1e-3, about
    60 epochs to the early stop) in a third of the epochs (eval/results/bench_sasrec_fit.md).
    """

    max_len: int = 50
    dim: int = 64
    blocks: int = 2
    heads: int = 2
    dropout: float = 0.3
    lr: float = 2e-3
    batch_size: int = 32
    max_epochs: int = 20
    patience: int = 10
    seed: int = 0
    schedule: str = "wsd"

    def __post_init__(self) -> None:
        for key in ("max_len", "dim", "blocks", "heads", "batch_size", "max_epochs", "patience"):
            value = getattr(self, key)
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise ConfigError(f"sasrec {key} must be a positive integer, got {value!r}")
        if self.dim % self.heads:
            raise ConfigError(f"sasrec dim ({self.dim}) must be divisible by heads ({self.heads})")
        if not 0.0 <= self.dropout < 1.0:
            raise ConfigError(f"sasrec dropout must be in [0, 1), got {self.dropout!r}")
        if not self.lr > 0:
            raise ConfigError(f"sasrec lr must be > 0, got {self.lr!r}")
        if self.schedule not in SCHEDULES:
            raise ConfigError(f"sasrec schedule must be one of {', '.join(SCHEDULES)}, got {self.schedule!r}")


def _build_module(n_items: int, settings: SasrecSettings) -> Any:
    import torch
    from torch import nn

    parts = _torch_parts()

    class Sasrec(nn.Module):
        """Item ids 1..n (0 = padding) -> a hidden state per position."""

        def __init__(self) -> None:
            super().__init__()
            self.items = nn.Embedding(n_items + 1, settings.dim, padding_idx=0)
            self.positions = nn.Embedding(settings.max_len, settings.dim)
            self.blocks = nn.ModuleList(
                parts.Block(settings.dim, settings.heads, settings.dropout) for _ in range(settings.blocks)
            )
            self.norm = nn.LayerNorm(settings.dim)
            causal = torch.triu(torch.ones(settings.max_len, settings.max_len, dtype=torch.bool), diagonal=1)
            self.register_buffer("causal", causal, persistent=False)
            nn.init.normal_(self.items.weight, std=0.02)
            nn.init.normal_(self.positions.weight, std=0.02)

        def forward(self, seq: torch.Tensor) -> torch.Tensor:
            length = seq.shape[1]
            pos = torch.arange(length, device=seq.device)
            x = self.items(seq) * settings.dim**0.5 + self.positions(pos)[None]
            x = parts.dropout(x, settings.dropout, self.training) * (seq > 0).unsqueeze(-1)
            # Left-padded: a padding position may attend to the first real item only through the causal mask's
            # own diagonal; it is never a query we read.
            causal: torch.Tensor = self.causal  # type: ignore[assignment]
            for block in self.blocks:
                x = block(x, causal[:length, :length])
            return self.norm(x)

        def logits(self, hidden: torch.Tensor) -> torch.Tensor:
            return hidden @ self.items.weight[1:].T  # item 1..n -> column 0..n-1

    return Sasrec()


@functools.cache
def _torch_parts() -> Any:
    """The torch pieces of the model, defined once on first use (torch is imported lazily).

    ``Block`` is the pre-norm transformer block of ``nn.TransformerEncoderLayer(dim, heads, dim_feedforward=dim,
    norm_first=True)`` (the same numbers for the same weights, tested), written out so that its five dropouts use
    ``dropout``: a mask from ``torch.rand_like``, about a third of the CPU time of ``F.dropout``'s Bernoulli
    sampling, which was a quarter of a training step.
    """
    import torch
    import torch.nn.functional as F  # noqa: N812
    from torch import nn

    class Dropout(torch.autograd.Function):
        @staticmethod
        def forward(ctx: Any, x: Any, p: float) -> Any:
            keep = torch.rand_like(x) >= p
            ctx.save_for_backward(keep)
            ctx.scale = 1.0 / (1.0 - p)
            return x * keep * ctx.scale

        @staticmethod
        def backward(ctx: Any, grad: Any) -> Any:
            (keep,) = ctx.saved_tensors
            return grad * keep * ctx.scale, None

    def dropout(x: Any, p: float, training: bool) -> Any:
        """Inverted dropout: each element zeroed with probability `p`, the rest scaled by 1 / (1 - p)."""
        return Dropout.apply(x, p) if training and p > 0 else x

    class Block(nn.Module):
        """x + drop(attention(norm1(x))), then + drop(W2 drop(relu(W1 norm2(x)))); causal multi-head attention
        with dropout on its weights."""

        def __init__(self, dim: int, heads: int, p: float) -> None:
            super().__init__()
            self.heads, self.p = heads, p
            self.norm1, self.norm2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
            self.qkv = nn.Linear(dim, 3 * dim)  # initialised as nn.MultiheadAttention's packed projection
            self.out = nn.Linear(dim, dim)
            self.ff1, self.ff2 = nn.Linear(dim, dim), nn.Linear(dim, dim)
            nn.init.xavier_uniform_(self.qkv.weight)
            nn.init.zeros_(self.qkv.bias)
            nn.init.zeros_(self.out.bias)

        def forward(self, x: torch.Tensor, causal: torch.Tensor) -> torch.Tensor:
            batch, length, dim = x.shape
            head = dim // self.heads
            q, k, v = self.qkv(self.norm1(x)).view(batch, length, 3, self.heads, head).permute(2, 0, 3, 1, 4)
            weights = ((q @ k.transpose(-1, -2)) * head**-0.5).masked_fill(causal, float("-inf")).softmax(-1)
            attended = (dropout(weights, self.p, self.training) @ v).transpose(1, 2).reshape(batch, length, dim)
            x = x + dropout(self.out(attended), self.p, self.training)
            inner = dropout(F.relu(self.ff1(self.norm2(x))), self.p, self.training)
            return x + dropout(self.ff2(inner), self.p, self.training)

    return types.SimpleNamespace(Block=Block, dropout=dropout)


def _left_pad(rows: list[list[int]], length: int) -> np.ndarray:
    out = np.zeros((len(rows), length), dtype=np.int64)
    for n, row in enumerate(rows):
        row = row[-length:]
        if row:
            out[n, length - len(row) :] = row
    return out


class SasrecRetriever(CatalogueRetriever):
    """Scores every item by the model's next-item logits after the last `max_len` history items."""

    name = "sasrec"

    def __init__(
        self,
        item_ids: list[str],
        module: Any,
        settings: SasrecSettings,
        popularity: PopularityRetriever,
        dataset_name: str = "?",
    ) -> None:
        super().__init__(item_ids, dataset_name, fallback=popularity)
        self.module = module.eval()
        self.settings = settings

    @classmethod
    def fit(
        cls,
        dataset: Dataset,
        *,
        settings: SasrecSettings | dict[str, Any] | None = None,
        cache_dir: str | Path | None = None,
        progress: bool = True,
    ) -> SasrecRetriever:
        """Train SASRec on the users' interaction sequences in `dataset`, or load the matching cached model.

        Args:
            dataset: the interactions to learn from (a training split in evaluation).
            settings: a `SasrecSettings` or a mapping of its fields.
            cache_dir: where fitted models are kept (default ``$LLMREC_HOME/retrievers``).
            progress: show a progress bar over epochs.
        """
        from llmrec.config import from_mapping

        if settings is None:
            settings = SasrecSettings()
        elif not isinstance(settings, SasrecSettings):
            settings = from_mapping(SasrecSettings, settings, "sasrec settings")
        ids = catalogue_ids(dataset)
        position = {item: n + 1 for n, item in enumerate(ids)}
        sequences: dict[str, list[int]] = {}
        for x in dataset.interactions:  # sorted by user, then time
            if x.item_id in position:
                sequences.setdefault(x.user_id, []).append(position[x.item_id])
        key = _fingerprint(ids, sequences, settings)
        if cache_dir is None:
            from llmrec.assets import llmrec_home

            cache_dir = llmrec_home() / "retrievers"
        path = Path(cache_dir) / f"sasrec-{key}.pt"
        popularity = PopularityRetriever.fit(dataset)
        module = _load_checkpoint(path, key, len(ids), settings)
        if module is None:
            module = _train(list(sequences.values()), len(ids), settings, progress)
            _save_checkpoint(path, key, module, settings)
        return cls(ids, module, settings, popularity, dataset.name)

    def _scores(self, history_idx: np.ndarray) -> np.ndarray:
        return self._batch_scores([history_idx])[0]

    def _batch_scores(self, histories: Sequence[np.ndarray]) -> np.ndarray:
        """Catalogue scores for several histories (catalogue positions, oldest first) in one forward pass."""
        import torch

        seq = torch.from_numpy(_left_pad([list(np.asarray(h) + 1) for h in histories], self.settings.max_len))
        with torch.inference_mode():
            hidden = self.module(seq)[:, -1]
            return self.module.logits(hidden).double().numpy()

    def _scores_as_new(self, history_idx: np.ndarray, wanted: np.ndarray, own: np.ndarray) -> np.ndarray:
        """Not available: a fitted SASRec model cannot forget one user's interactions without a refit, so scoring a
        training target as new would leak it; cooc, popularity and ease can (use one of them)."""
        from llmrec.errors import ConfigError

        raise ConfigError(
            "sasrec cannot score items as new to a user whose interactions it was fitted on (a training "
            "target would leak); order or score training candidates with cooc, popularity or ease instead"
        )


def _fingerprint(ids: list[str], sequences: dict[str, list[int]], settings: SasrecSettings) -> str:
    digest = hashlib.sha256()
    digest.update(json.dumps({"format": FORMAT_VERSION, "settings": asdict(settings)}, sort_keys=True).encode())
    digest.update("\t".join(ids).encode())
    for user in sorted(sequences):
        digest.update(f"\n{user}:".encode() + np.asarray(sequences[user], dtype=np.int64).tobytes())
    return digest.hexdigest()[:16]


def _load_checkpoint(path: Path, key: str, n_items: int, settings: SasrecSettings) -> Any:
    """The cached module if `path` holds a checkpoint for exactly this data and these settings, else None."""
    import torch

    if not path.is_file():
        return None
    try:
        blob = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # a damaged file is refit, not trusted
        log.warning("sasrec: cannot read %s (%s); refitting", path, exc)
        return None
    if blob.get("key") != key or blob.get("n_items") != n_items:
        log.warning("sasrec: %s was fitted on other training data or settings; refitting", path)
        return None
    module = _build_module(n_items, settings)
    module.load_state_dict(blob["state"])
    log.info("sasrec: loaded the fitted model from %s", path)
    return module


def _save_checkpoint(path: Path, key: str, module: Any, settings: SasrecSettings) -> None:
    import torch

    from llmrec.io import atomic_write_bytes

    buffer = io.BytesIO()
    n_items = module.items.num_embeddings - 1
    torch.save({"key": key, "n_items": n_items, "settings": asdict(settings), "state": module.state_dict()}, buffer)
    atomic_write_bytes(path, buffer.getvalue())
    log.info("sasrec: saved the fitted model to %s", path)


def _train(sequences: list[list[int]], n_items: int, settings: SasrecSettings, progress: bool) -> Any:
    """Train with next-item cross-entropy at every position; early-stop on each user's held-out last item."""
    import torch
    from tqdm.auto import tqdm

    torch.manual_seed(settings.seed)
    rng = np.random.default_rng(settings.seed)
    train_seqs = [s[:-1] for s in sequences if len(s) >= 3]
    holdout = [(s[:-1], s[-1]) for s in sequences if len(s) >= 3]
    if not train_seqs:
        raise ConfigError("sasrec needs users with at least 3 interactions in the training data")
    # Each sequence is cut from its end into windows of max_len + 1 items (inputs + next-item targets).
    windows: list[list[int]] = []
    span = settings.max_len + 1
    for s in train_seqs:
        for end in range(len(s), 1, -settings.max_len):
            windows.append(s[max(0, end - span) : end])
    batch = _left_pad(windows, span)
    inputs, targets = torch.from_numpy(batch[:, :-1]), torch.from_numpy(batch[:, 1:])
    val_inputs = torch.from_numpy(_left_pad([h for h, _ in holdout], settings.max_len))
    val_targets = np.asarray([t for _, t in holdout]) - 1
    val_seen = [np.asarray(h) - 1 for h, _ in holdout]

    module = _build_module(n_items, settings)
    cross_entropy = _full_softmax_cross_entropy()
    scratch = torch.empty(settings.batch_size * settings.max_len, n_items)  # one batch's logits, reused
    optimizer = torch.optim.Adam(module.parameters(), lr=settings.lr, betas=(0.9, 0.98))
    steps_per_epoch = -(-len(windows) // settings.batch_size)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, _lr_factor(settings.schedule, steps_per_epoch, settings.max_epochs * steps_per_epoch)
    )
    best, best_state, bad_epochs = -1.0, None, 0
    started = time.perf_counter()
    bar = tqdm(range(settings.max_epochs), desc="sasrec", unit="epoch", disable=not progress, dynamic_ncols=True)
    epochs_run = 0
    for epoch in bar:
        epochs_run = epoch + 1
        module.train()
        order = rng.permutation(len(windows))
        total = 0.0
        for start in range(0, len(order), settings.batch_size):
            rows = torch.from_numpy(order[start : start + settings.batch_size])
            x, y = inputs[rows], targets[rows]
            hidden = module(x)
            mask = y > 0
            loss = cross_entropy.apply(hidden[mask], module.items.weight[1:], y[mask] - 1, scratch)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            scheduler.step()
            total += float(loss.detach()) * len(rows)
        score = _holdout_ndcg(module, val_inputs, val_targets, val_seen)
        bar.set_postfix(loss=f"{total / len(order):.3f}", val_ndcg10=f"{score:.4f}")
        if score > best:
            best, bad_epochs = score, 0
            best_state = {k: v.detach().clone() for k, v in module.state_dict().items()}
        else:
            bad_epochs += 1
            if bad_epochs >= settings.patience:
                break
    assert best_state is not None
    module.load_state_dict(best_state)
    log.info(
        "sasrec: %d epochs in %.0f s; best held-out full-catalogue NDCG@10 %.4f",
        epochs_run,
        time.perf_counter() - started,
        best,
    )
    return module.eval()


def _lr_factor(schedule: str, warmup: int, total: int) -> Any:
    """The learning rate's multiplier at each optimizer step (`SCHEDULES`)."""
    if schedule == "constant":
        return lambda step: 1.0

    decay_from = warmup if schedule == "cosine" else max(warmup, total - total // 3)

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        done = min(1.0, max(0.0, (step - decay_from) / max(1, total - decay_from)))
        return 0.5 * (1.0 + math.cos(math.pi * done)) if schedule == "cosine" else 1.0 - done

    return factor


def _full_softmax_cross_entropy() -> Any:
    """``apply(hidden, table, targets, scratch)``: the mean cross-entropy of softmax(hidden @ table.T) at `targets`,
    with its exact gradient, computed in place in `scratch` (at least ``len(hidden)`` rows of ``len(table)``).

    The same numbers as ``F.cross_entropy(hidden @ table.T, targets)`` up to float rounding, at about half its cost
    on a CPU: one logits buffer reused across batches instead of four fresh ones per batch (allocating and zeroing
    them dominated), and the softmax kept in it for the backward pass. The next call overwrites `scratch`, so each
    loss must be backpropagated before the next is computed (as a training loop does).
    """
    import torch

    class FullSoftmaxCrossEntropy(torch.autograd.Function):
        @staticmethod
        def forward(ctx: Any, hidden: Any, table: Any, targets: Any, scratch: Any) -> Any:
            n = hidden.shape[0]
            if scratch.shape[0] < n or scratch.shape[1] != table.shape[0]:
                raise ValueError(f"scratch {tuple(scratch.shape)} cannot hold {n} x {table.shape[0]} logits")
            probs = torch.mm(hidden, table.T, out=scratch[:n])
            picked = probs.gather(1, targets[:, None])
            top = probs.amax(1, keepdim=True)
            total = probs.sub_(top).exp_().sum(1, keepdim=True)  # unnormalised softmax, in place
            ctx.save_for_backward(hidden, table, targets, total)
            ctx.probs = probs
            return (top + total.log() - picked).mean()

        @staticmethod
        def backward(ctx: Any, grad: Any) -> Any:
            hidden, table, targets, total = ctx.saved_tensors
            probs = ctx.probs  # d loss / d logits = (softmax - one-hot) / n, formed in place
            n = probs.shape[0]
            probs.mul_((grad / n) / total)
            probs.scatter_add_(1, targets[:, None], (-grad / n).expand(n, 1).contiguous())
            return probs @ table, probs.T @ hidden, None, None

    return FullSoftmaxCrossEntropy


def _holdout_ndcg(module: Any, inputs: Any, targets: np.ndarray, seen: list[np.ndarray]) -> float:
    """Full-catalogue NDCG@10 of the held-out items (each user's own earlier items excluded), under the reports'
    tie rule (`llmrec.metrics.target_ndcg`: an item scored equal to the target ranks before it when its catalogue
    position comes earlier)."""
    import torch

    module.eval()
    with torch.inference_mode():
        scores = module.logits(module(inputs)[:, -1]).numpy()
    for row, items in zip(scores, seen, strict=True):
        row[items] = -np.inf
    return float(target_ndcg(scores, targets, 10).mean())
