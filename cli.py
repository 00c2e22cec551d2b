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


if __name__ == "__main__":
    main()
