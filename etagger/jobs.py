"""Scheduled bulk-tagging jobs: a YAML/JSON spec (schemas/job.schema.json) run idempotently.

Each input file is tagged by its own tag-corpus pipeline into a staging folder, and its
outputs are moved into the job's output folder before the file is recorded, with its
SHA-256, in OUTPUT/manifest.json. A rerun after a kill skips every recorded file whose
checksum is unchanged, so finished work is never redone, and no output is ever duplicated
or left half-written.
"""
from __future__ import annotations

import glob
import hashlib
import json
import logging
import os
import shutil
from pathlib import Path

import jsonschema
import yaml

from etagger.fsutil import atomic_write

log = logging.getLogger(__name__)
SCHEMA_PATH = Path(__file__).resolve().parents[1] / "schemas" / "job.schema.json"
MANIFEST = "manifest.json"


def load_job(path: str | Path) -> dict:
    """The validated job spec with defaults filled in and paths made absolute."""
    path = Path(path)
    spec = yaml.safe_load(path.read_text())  # YAML is a superset of JSON
    schema = json.loads(SCHEMA_PATH.read_text())
    try:
        jsonschema.validate(spec, schema)
    except jsonschema.ValidationError as e:
        raise ValueError(f"{path}: invalid job spec at {'/'.join(map(str, e.absolute_path)) or 'top level'}: {e.message}") from None
    for key, prop in schema["properties"].items():
        if "default" in prop:
            spec.setdefault(key, prop["default"])
    base = path.resolve().parent
    spec["model"] = str((base / spec["model"]).resolve())
    spec["output"] = str((base / spec["output"]).resolve())
    spec["inputs"] = [str(base / pattern) for pattern in spec["inputs"]]
    return spec


def sha256(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def input_files(spec: dict) -> list[str]:
    files = sorted({os.path.normpath(f) for pattern in spec["inputs"] for f in glob.glob(pattern)})
    if not files:
        raise FileNotFoundError(f"job {spec['name']}: no input matches {spec['inputs']}")
    return files


def _tag_argv(spec: dict, path: str, out: Path) -> list[str]:
    argv = ["--model", spec["model"], "--input", path, "--output", str(out), "--format", spec["format"],
            "--input-format", spec["input_format"], "--runner", spec["runner"], *spec["pipeline_options"]]
    return argv + (["--wikitext"] if spec["wikitext"] else []) + (["--lenient"] if spec["lenient"] else [])


def run_job(path: str | Path) -> dict:
    """Runs (or resumes) a job; returns {"tagged": [...], "skipped": [...]}."""
    from pipelines import tag_corpus

    spec = load_job(path)
    output = Path(spec["output"])
    output.mkdir(parents=True, exist_ok=True)
    manifest_path = output / MANIFEST
    manifest = json.loads(manifest_path.read_text()) if manifest_path.exists() else {"job": spec["name"], "files": {}}
    done = {"tagged": [], "skipped": []}
    for source in input_files(spec):
        checksum = sha256(source)
        entry = manifest["files"].get(source)
        if entry and entry["sha256"] == checksum and all((output / name).exists() for name in entry["outputs"]):
            done["skipped"].append(source)
            continue
        staging = output / ".staging"
        shutil.rmtree(staging, ignore_errors=True)  # whatever a killed run left
        tag_corpus.run(_tag_argv(spec, source, staging))
        outputs = []
        for produced in sorted(staging.iterdir()):
            if produced.name == "timing.json":
                target = output / "timing" / f"{Path(source).name}.json"
                target.parent.mkdir(exist_ok=True)
            else:
                target = output / produced.name
            os.replace(produced, target)  # same file system: atomic
            outputs.append(str(target.relative_to(output)))
        shutil.rmtree(staging)
        manifest["files"][source] = {"sha256": checksum, "outputs": outputs}
        with atomic_write(manifest_path) as f:
            json.dump(manifest, f, indent=2, sort_keys=True)
        done["tagged"].append(source)
        log.info("job %s: tagged %s", spec["name"], source)
    return done
