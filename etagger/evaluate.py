"""Evaluation of a trained model on a preprocessed split: conlleval-exact entity F1, token
F1, the per-type table, and a conlleval input file of the predictions."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path

from etagger import data, fsutil, metrics, outputs, tagschemes
from etagger.ensemble import load_tagger
from etagger.train import input_names, predict, score


def write_predictions(
    path: str | Path, rows: Iterable[dict], train_scheme: str, input_scheme: str
) -> None:
    """conlleval input: ``word [pos chunk] gold pred`` per token (tags in the input's
    scheme), a blank line after each sentence; written atomically."""
    with fsutil.atomic_write(path) as f:
        for row in rows:
            pred = tagschemes.convert_tags(row["pred"], train_scheme, input_scheme)
            f.write(
                outputs.conll_text(
                    [row[k] for k in ("word", "pos", "chunk", "tag") if k in row], pred
                )
            )


def evaluate_split(
    model_dirs: str | Path | Sequence[str | Path],
    data_dir: str | Path,
    split: str,
    pred_out: str | None = None,
    weights: str = "best",
) -> tuple[dict, str]:
    """(JSON-ready summary, conlleval-format report text) for ``split`` of ``data_dir``, by
    one model folder or the ensemble of several (etagger.ensemble)."""
    model, configs, vocabs, info = load_tagger(model_dirs, weights)
    data_info = data.load_preprocess_info(data_dir)
    names = tuple(dict.fromkeys(n for c in configs for n in input_names(c, data_info)))
    names += ("word", "pos", "chunk", "tag", "index")
    dataset = data.make_dataset(
        data_dir,
        split,
        64,
        names,
        bucket=False,
        cache=False,
        document_context=configs[0].model.document_context,
    )
    rows = sorted(predict(model, dataset, vocabs["tag"]), key=lambda r: r["index"])
    report = score(rows, info["tag_scheme"], info["input_scheme"])
    if pred_out:
        write_predictions(pred_out, rows, info["tag_scheme"], info["input_scheme"])
    summary = {
        "split": split,
        "sentences": len(rows),
        "tokens": report.tokens,
        "entity_f1": round(report.f1, 6),
        "token_f1": round(report.token_f1, 6),
        "precision": round(report.precision, 6),
        "recall": round(report.recall, 6),
        "accuracy": round(report.accuracy, 6),
    }
    return summary, metrics.format_report(report)
