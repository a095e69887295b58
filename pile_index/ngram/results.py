"""The typed answers of n-gram queries, shared by the CLI (``--json`` is ``dataclasses.asdict`` of them) and
the API (their JSON is the response body; the routes' response models are these classes). Field order is the
JSON key order."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class NgramCount:
    """An n-gram's exact count."""

    tokens: list[int]
    count: int = field(metadata={"description": "occurrences inside documents (rows of a preshuffled store); "
                                                "overlaps count"})


@dataclass(frozen=True, slots=True)
class NgramCounts:
    """A batch of counts, in the order of the queries."""

    counts: list[NgramCount] = field(metadata={"description": "one per query, in the order given"})


@dataclass(frozen=True, slots=True)
class Occurrence:
    """Where an n-gram occurs: a document and a token offset in it."""

    doc_id: int
    offset: int = field(metadata={"description": "token offset of the occurrence in the document"})


@dataclass(frozen=True, slots=True)
class NgramLocate:
    """One page of an n-gram's occurrences, in index order."""

    tokens: list[int]
    count: int
    offset: int
    limit: int
    occurrences: list[Occurrence]
    next_offset: int | None = field(metadata={"description": "offset of the next page; null on the last page"})


@dataclass(frozen=True, slots=True)
class NgramSteps:
    """When training saw an n-gram: counts, first and last step, a histogram of steps, counts per source."""

    tokens: list[int]
    count: int = field(metadata={"description": "occurrences inside documents"})
    count_in_rows: int = field(metadata={"description": "(occurrence, trained row) pairs where the row holds the "
                                                        "whole n-gram"})
    count_split_by_row_boundary: int = field(metadata={"description": "occurrences cut by a trained row's boundary"})
    count_in_untrained_rows: int
    documents_seen: int
    first_step: int | None
    last_step: int | None
    train_steps: int
    batch_size: int
    bucket_steps: int
    histogram: list[int] = field(metadata={"description": "count_in_rows per bucket of bucket_steps steps"})
    by_source: dict[str, int] = field(metadata={"description": "count_in_rows per pile_set_name (needs a "
                                                               "documents table)"})
    by_source_available: bool


@dataclass(frozen=True, slots=True)
class TraceOccurrence:
    """An occurrence of a traced span, with its document's source."""

    doc_id: int
    offset: int = field(metadata={"description": "token offset of the occurrence in the document"})
    pile_set_name: str | None = field(metadata={"description": "the document's source (null without a documents "
                                                               "table)"})


@dataclass(frozen=True, slots=True)
class TraceSpan:
    """A maximal occurring span of a passage: where it is, how often it occurs, when training saw it."""

    start: int = field(metadata={"description": "first token of the span in the passage"})
    end: int = field(metadata={"description": "one past its last token"})
    length: int
    tokens: list[int]
    text: str | None = field(metadata={"description": "the span decoded (null without a tokenizer)"})
    count: int = field(metadata={"description": "occurrences inside documents"})
    occurrences: list[TraceOccurrence] = field(metadata={"description": "the first `occurrences` of them, in "
                                                                        "index order"})
    first_step: int | None = field(metadata={"description": "first training step whose row holds the whole span"})
    last_step: int | None
    count_in_rows: int | None = field(metadata={"description": "(occurrence, trained row) pairs holding the whole "
                                                               "span"})
    steps_computed: bool = field(metadata={"description": "false without a training order, or when count > "
                                                          "max_occurrences"})


@dataclass(frozen=True, slots=True)
class NgramTrace:
    """A passage traced to the index: its maximal occurring spans, the filters' counts and the kept spans."""

    tokens: list[int]
    n_tokens: int
    min_tokens: int
    max_count: int | None
    occurrences_per_span: int
    maximal_spans: int = field(metadata={"description": "maximal occurring spans before the filters"})
    dropped_short: int = field(metadata={"description": "maximal spans shorter than min_tokens"})
    dropped_frequent: int = field(metadata={"description": "maximal spans (long enough) with count > max_count"})
    spans: list[TraceSpan] = field(metadata={"description": "the kept maximal spans, by position (they may "
                                                            "overlap)"})
