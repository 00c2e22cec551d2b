"""Scheduled bulk-tagging jobs: a YAML/JSON spec (schemas/job.schema.json) run idempotently.

Each input file is tagged by its own tag-corpus pipeline into a staging folder, and its
outputs are moved into the job's output folder before the file is recorded, with its
SHA-256, in OUTPUT/manifest.json. A rerun after a kill skips every recorded file whose
checksum is unchanged and whose outputs are all there, so finished work is never redone,
and no output is ever duplicated or left half-written. Inputs, model, output and manifest
may be on any filesystem Beam has (local, ``gs://``, ``s3://``); the spec's
``pipeline_options`` (an S3 endpoint, say) apply to all of them.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from pathlib import Path

import jsonschema
import yaml

from etagger import fsutil
from etagger.errors import InputError

log = logging.getLogger(__name__)
SCHEMA_PATH = Path(__file__).resolve().parents[1] / "schemas" / "job.schema.json"
MANIFEST = "manifest.json"
STAGING = ".staging"


def _resolve(base: str, path: str) -> str:
    """``path`` relative to the job file's folder ``base``; absolute and remote paths as given."""
    if not fsutil.is_local(path) or os.path.isabs(path):
        return path
    return os.path.normpath(os.path.join(base, path))


class JobSpecError(InputError):
    """A job spec that is not valid YAML or not valid against schemas/job.schema.json."""


def load_job(path: str | Path) -> dict:
    """The validated job spec with defaults filled in and local paths made absolute."""
    path = str(path)
    data = fsutil.read_bytes(path)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        line = data.count(b"\n", 0, e.start) + 1
        raise JobSpecError(f"{path}:{line}: not UTF-8 ({e.reason})") from None
    try:
        spec = yaml.safe_load(text)  # YAML is a superset of JSON
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        where = f"{path}:{mark.line + 1}" if mark else path
        raise JobSpecError(f"{where}: not valid YAML ({e.problem or e.context})") from None
    except yaml.reader.ReaderError as e:  # a character YAML does not allow
        line = text.count("\n", 0, e.position) + 1
        raise JobSpecError(
            f"{path}:{line}: not valid YAML (character U+{e.character:04X} is not allowed)"
        ) from None
    schema = json.loads(SCHEMA_PATH.read_text())
    try:
        jsonschema.validate(spec, schema)
    except jsonschema.ValidationError as e:
        where = "/".join(map(str, e.absolute_path)) or "top level"
        raise JobSpecError(f"{path}: invalid job spec at {where}: {e.message}") from None
    for key, prop in schema["properties"].items():
        if "default" in prop:
            spec.setdefault(key, prop["default"])
    base = (
        os.path.dirname(os.path.abspath(path)) if fsutil.is_local(path) else path.rsplit("/", 1)[0]
    )
    spec["model"] = _resolve(base, spec["model"])
    spec["output"] = _resolve(base, spec["output"])
    spec["inputs"] = [_resolve(base, pattern) for pattern in spec["inputs"]]
    return spec


def sha256(path: str) -> str:
    digest = hashlib.sha256()
    with fsutil.open_read(path) as f:
        for block in iter(lambda: f.read(fsutil.COPY_BLOCK), b""):
            digest.update(block)
    return digest.hexdigest()


def input_files(spec: dict) -> list[str]:
    try:
        return [m.path for m in fsutil.match(spec["inputs"])]
    except fsutil.NoMatchError as e:
        raise FileNotFoundError(f"job {spec['name']}: {e}") from None


def _read_manifest(path: str, name: str) -> dict:
    return json.loads(fsutil.read_text(path)) if fsutil.exists(path) else {"job": name, "files": {}}


def _move_outputs(staging: str, output: str, source: str) -> list[str]:
    """Moves what tag-corpus wrote for ``source`` into ``output``; its timing figures go to
    timing/<input name>.json. Returns the outputs' paths relative to ``output``."""
    produced = sorted(m.path for m in fsutil.walk(staging))
    names = [p[len(staging.rstrip("/")) + 1 :] for p in produced]
    names = [f"timing/{fsutil.basename(source)}.json" if n == "timing.json" else n for n in names]
    fsutil.move(produced, [fsutil.join(output, n) for n in names])
    return names


def run_job(path: str | Path) -> dict:
    """Runs (or resumes) a job; returns {"tagged": [...], "skipped": [...]}."""
    from pipelines import io, tag_corpus
    from pipelines.options import TagOptions

    spec = load_job(path)
    io.pipeline_options(spec["pipeline_options"])  # the driver's filesystems (an S3 endpoint)
    output = spec["output"]
    manifest_path = fsutil.join(output, MANIFEST)
    manifest = _read_manifest(manifest_path, spec["name"])
    # A run killed inside an atomic write (the manifest's, say) left its temporary file.
    fsutil.delete_temporaries(output)
    done: dict[str, list[str]] = {"tagged": [], "skipped": []}
    for source in input_files(spec):
        checksum = sha256(source)
        entry = manifest["files"].get(source)
        if (
            entry
            and entry["sha256"] == checksum
            and all(fsutil.exists(fsutil.join(output, n)) for n in entry["outputs"])
        ):
            done["skipped"].append(source)
            continue
        staging = fsutil.join(output, STAGING)
        fsutil.delete_tree(staging)  # whatever a killed run left
        options = TagOptions(
            model=spec["model"],
            input=(source,),
            output=staging,
            format=spec["format"],
            input_format=spec["input_format"],
            wikitext=spec["wikitext"],
            lenient=spec["lenient"],
        )
        tag_corpus.tag_corpus(options, ["--runner", spec["runner"], *spec["pipeline_options"]])
        outputs = _move_outputs(staging, output, source)
        fsutil.delete_tree(staging)
        manifest["files"][source] = {"sha256": checksum, "outputs": outputs}
        fsutil.write_text(manifest_path, json.dumps(manifest, indent=2, sort_keys=True))
        done["tagged"].append(source)
        log.info("job %s: tagged %s", spec["name"], source)
    return done
