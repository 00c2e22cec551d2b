"""etagger command line: preprocess, train, evaluate, export, tag-corpus, tag.

Beam-backed commands pass any option they do not know (``--runner``,
``--direct_num_workers``, ``--project`` ...) on to Beam.
"""
from __future__ import annotations

import json
import logging
import os
import sys

import click

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

BEAM_COMMAND = dict(context_settings={"ignore_unknown_options": True, "allow_extra_args": True,
                                      "help_option_names": ["-h", "--help"]}, add_help_option=True)


@click.group()
@click.option("-v", "--verbose", is_flag=True, help="log at INFO level")
def main(verbose: bool) -> None:
    """etagger: named-entity tagging as a batch data pipeline."""
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")


@main.command(**BEAM_COMMAND)
@click.pass_context
def preprocess(ctx: click.Context) -> None:
    """CoNLL splits and raw text -> sharded TFRecords, vocabularies, filtered GloVe, stats.

    Options: see `python -m pipelines.preprocess --help` (they are passed through).
    """
    from pipelines import preprocess as pipeline

    stats = pipeline.run(ctx.args)
    click.echo(json.dumps(stats, indent=2, sort_keys=True))


@main.command()
@click.option("--data", "data_dir", required=True, type=click.Path(exists=True, file_okay=False),
              help="output folder of `preprocess`")
@click.option("--config", "config_path", type=click.Path(exists=True, dir_okay=False),
              help="JSON config (configs/*.json); defaults to the built-in BiLSTM-CRF")
@click.option("--model-dir", required=True, type=click.Path(file_okay=False))
@click.option("--epochs", type=int, help="override train.epochs")
@click.option("--seed", type=int, help="override train.seed")
@click.option("--batch-size", type=int, help="override train.batch_size")
@click.option("--quiet", is_flag=True, help="no progress bar")
def train(data_dir, config_path, model_dir, epochs, seed, batch_size, quiet) -> None:
    """Train a tagger on preprocessed data; resumes from MODEL_DIR/last when present."""
    from etagger.config import Config
    from etagger.train import train as run_training

    config = Config.load(config_path) if config_path else Config()
    config = config.replace(epochs=epochs, seed=seed, batch_size=batch_size)
    result = run_training(data_dir, config, model_dir, progress=not quiet)
    click.echo(json.dumps(result))


@main.command()
@click.option("--model", "model_dir", required=True, type=click.Path(exists=True, file_okay=False))
@click.option("--data", "data_dir", required=True, type=click.Path(exists=True, file_okay=False))
@click.option("--split", default="test", show_default=True)
@click.option("--pred-out", type=click.Path(dir_okay=False), help="write conlleval input: word POS chunk gold pred")
@click.option("--weights", default="best", type=click.Choice(["best", "last"]), show_default=True)
def evaluate(model_dir, data_dir, split, pred_out, weights) -> None:
    """Entity F1 (conlleval-exact), token F1 and a per-type table on a preprocessed split."""
    from etagger.evaluate import evaluate_split

    summary, text = evaluate_split(model_dir, data_dir, split, pred_out, weights)
    click.echo(text, err=True, nl=False)
    click.echo(json.dumps(summary))


@main.command()
@click.option("--model", "model_dir", required=True, type=click.Path(exists=True, file_okay=False))
@click.option("--out", required=True, type=click.Path(file_okay=False))
@click.option("--weights", default="best", type=click.Choice(["best", "last"]), show_default=True)
def export(model_dir, out, weights) -> None:
    """Export a trained model as a SavedModel that takes token strings."""
    from etagger.export import export as run_export

    click.echo(str(run_export(model_dir, out, weights)))


if __name__ == "__main__":
    main()
