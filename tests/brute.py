"""Brute-force references shared by test files: a row's document pieces as strings, and the duplicate count of
a row's tokens [32:64) over the trained rows (Prashanth et al.'s measure), by substring search."""

from __future__ import annotations


def row_pieces(order, k: int) -> list[str]:
    """Row k's document pieces, each as a string of one character per token (substring = contiguous)."""
    row = order.row(k).tolist()
    return ["".join(map(chr, row[sp["sample_start"]: sp["sample_start"] + sp["doc_end"] - sp["doc_start"]]))
            for sp in order.spans(k)]


def brute_duplicates(order, trained_pieces, k: int) -> int | None:
    """Trained rows whose document pieces hold row k's tokens [32:64) whole; None when they cross documents."""
    from pile_index.ngram.duplicates import DUPLICATES_END as E, DUPLICATES_START as S

    gram = "".join(map(chr, order.row(k).tolist()[S:E]))
    if not any(sp["sample_start"] <= S and sp["sample_start"] + sp["doc_end"] - sp["doc_start"] >= E
               for sp in order.spans(k)):
        return None
    return sum(any(gram in p for p in pieces) for pieces in trained_pieces)
