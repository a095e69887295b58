"""The typed answers of the training order, shared by the CLI (``--json`` is ``dataclasses.asdict`` of them) and
the API (their JSON is the response body; the routes' response models are these classes).

Field order is the JSON key order. A field whose metadata has ``omit_none`` is left out of the CLI's output when
it is None (a row's ``text`` without a tokenizer, a span's ``metadata`` without a documents table); the API
always writes it (as null).
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields

import numpy as np

from ..sql.documents import DocumentMeta

OMIT_NONE = {"omit_none": True}


@dataclass(frozen=True, slots=True)
class Span:
    """A piece of a row: document tokens [doc_start, doc_end) at row positions [sample_start, sample_start +
    doc_end - doc_start)."""

    doc_id: int
    doc_start: int
    doc_end: int
    sample_start: int
    metadata: DocumentMeta | None = field(default=None, metadata={**OMIT_NONE, "description": "the document's row "
                                                                  "of the documents table (null without one)"})


@dataclass(frozen=True, slots=True)
class Sample:
    """One training row (``slot`` of step ``step``, sample ``step x batch size + slot``): its tokens, the document
    pieces it is made of (None when preshuffled) and its text."""

    step: int
    slot: int
    sample_index: int
    trained: bool = field(metadata={"description": "whether training read this row: sample_index < train_steps x "
                                                   "batch size"})
    tokens: list[int]
    spans: list[Span] | None
    text: str | None = field(default=None, metadata={**OMIT_NONE, "description": "the row decoded (null without a "
                                                                                  "tokenizer or with text=false)"})


@dataclass(frozen=True, slots=True)
class BatchInfo:
    """What rows steps step..to_step (inclusive) are: the first sample index, counts, and which are trained."""

    step: int
    to_step: int
    first_sample_index: int
    rows: int
    seq_length: int
    train_steps: int
    trained: list[bool] = field(metadata={"description": "one per step of step..to_step: whether training read "
                                                         "that step's rows"})
    trained_rows: int = field(metadata={"description": "the first trained_rows rows are trained rows, the rest "
                                                       "never were"})


@dataclass(frozen=True, slots=True)
class Batch(BatchInfo):
    """:class:`BatchInfo` with the rows' tokens (``/v1/batches`` as JSON)."""

    tokens: list[list[int]]

    @classmethod
    def of(cls, info: BatchInfo, rows: np.ndarray) -> Batch:
        return cls(**{f.name: getattr(info, f.name) for f in fields(BatchInfo)}, tokens=rows.tolist())


@dataclass(frozen=True, slots=True)
class RowOccurrence:
    """A trained row holding tokens [doc_start, doc_end) of a document."""

    step: int
    slot: int
    sample_index: int
    doc_start: int
    doc_end: int


@dataclass(frozen=True, slots=True)
class DocSteps:
    """Every trained row holding tokens of a document, by sample index."""

    doc_id: int
    occurrences: list[RowOccurrence]
    first_step: int | None
    last_step: int | None


@dataclass(frozen=True, slots=True)
class FirstRepeat:
    """The first trained row holding a document seen before."""

    step: int
    slot: int
    sample_index: int
    doc_id: int = field(metadata={"description": "the first document whose second occurrence training reads"})


@dataclass(frozen=True, slots=True)
class OrderStats:
    """``order stats``: epochs, sample counts, documents seen 0 / 1 / 2+ times by trained rows, first repeat."""

    epochs: int
    tokens_per_epoch: int
    documents: int
    documents_empty: int
    seq_length: int
    samples_total: int
    samples_usable: int
    batch_size: int
    train_steps: int
    trained_samples: int
    documents_seen: dict[str, int]
    first_repeat: FirstRepeat | None


@dataclass(frozen=True, slots=True)
class OrderInfo:
    """``/v1/order``: the order's options and, over a raw store, the facts of :class:`OrderStats`."""

    preshuffled: bool = field(metadata={"description": "a preshuffled store: row k is item k, no document identity"})
    seed: int
    seq_length: int = field(metadata={"description": "tokens per row, minus one (rows hold seq_length + 1 tokens)"})
    batch_size: int = field(metadata={"description": "rows per training step"})
    num_samples: int = field(metadata={"description": "usable rows of the order"})
    train_steps: int = field(metadata={"description": "steps counted as trained"})
    trained_samples: int = field(metadata={"description": "train_steps x batch_size"})
    epochs: int | None = field(metadata={"description": "passes over the documents in doc_idx (null when "
                                                        "preshuffled)"})
    tokens_per_epoch: int | None
    documents_seen: dict[str, int] | None = field(metadata={"description": "documents seen 0, 1 and 2+ times by "
                                                                           "trained rows"})
    first_repeat: FirstRepeat | None = field(metadata={"description": "the first trained row holding a document "
                                                                      "seen before"})


@dataclass(frozen=True, slots=True)
class OrderBuilt:
    """``order build``: the order's sizes and the files written (or found)."""

    epochs: int
    bytes: int
    tokens_per_epoch: int
    documents: int
    samples_total: int
    samples_usable: int
    train_steps: int
    trained_samples: int
    files: dict[str, str]
    seconds: float


@dataclass(frozen=True, slots=True)
class Mismatch:
    """The first token where a preshuffled store differs from raw + index maps."""

    sample_index: int
    step: int
    slot: int
    position: int
    expected: int
    found: int


@dataclass(frozen=True, slots=True)
class OrderVerify:
    """``order verify``: rows [start, stop) compared, how many were checked, the first mismatch."""

    start: int
    stop: int
    checked: int
    equal: bool
    first_mismatch: Mismatch | None
