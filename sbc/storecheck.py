"""What the study store (:mod:`sbc.store`) accepts from disk: nothing it reads is trusted.

- study.json is checked field by field (:func:`check_manifest`); a damaged one is a
  ``StoreError`` naming the file and the field, never a KeyError further on.  What a study
  would write there is checked the same way first, and must hold no NaN or infinity
  (:func:`non_finite`); when a store holds another study, :func:`diff_manifests` says what
  changed.
- A replicate's record (:func:`load_record`) must be a regular file, strict JSON, unchanged
  since written (the SHA-256 digest written as its last field, when it carries one), pass the
  record's own schema (:func:`sbc.record.record_problem`), and be this study's own
  (:func:`foreign_problem`: the study's model and design, the replicate its path names, the
  seed the study derives for it, the study's fingerprint; :class:`Expected` is what the
  study's records must say).
- A genome plan's screen record (:func:`load_screen`) likewise: a regular file, strict JSON,
  unchanged since written, this study's (fingerprint, the design and replicate its path
  names), and passing the caller's schema.

A file that fails is returned with its kind ("corrupt", "invalid" or "foreign": the suffix
it is set aside with) and the reason, which the store reports (:func:`sbc.storefiles.not_counted`).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from sbc import seeding
from sbc.design import Design
from sbc.errors import StoreError
from sbc.numerics import describe_change
from sbc.record import digest_problem, is_int, is_label, is_number, json_type, loads, record_problem, show
from sbc.storefiles import Unreadable, read_regular

MAX_RECORD_BYTES = 256 * 2**20  # far above any real record (a few kB per ranked scalar)


def non_finite(value, where: str = "") -> str | None:
    """The dotted key of the first NaN or infinity in a JSON-like ``value``, or None."""
    if isinstance(value, float) and not math.isfinite(value):
        return where or "the value"
    items = value.items() if isinstance(value, dict) else \
        enumerate(value) if isinstance(value, (list, tuple)) else ()
    for key, item in items:
        found = non_finite(item, f"{where}[{key}]" if isinstance(key, int) else
                           f"{where}.{key}" if where else str(key))
        if found:
            return found
    return None


def check_manifest(manifest, path: Path) -> dict:
    """``manifest`` (study.json as read) if it has every field the store and the report use,
    with its type; else a StoreError naming the file and the field."""
    problem = manifest_problem(manifest)
    if problem:
        raise StoreError(f"{path} is damaged: {problem}. It is written by `sbc run` and must not "
                         "be edited: restore it (from a backup or version control), or move "
                         f"{path.parent} away and run the study again to start afresh")
    return manifest


def manifest_problem(m) -> str | None:
    if not isinstance(m, dict):
        return f"it holds {json_type(m)} instead of a JSON object"
    if not isinstance(m.get("fingerprint"), str) or not m["fingerprint"]:
        return f"'fingerprint' must be a non-empty string, got {show(m.get('fingerprint'))}"
    study = m.get("study")
    if not isinstance(study, dict):
        return f"'study' must be an object, got {show(study)}"
    if not isinstance(study.get("name"), str):
        return f"'study.name' must be a string, got {show(study.get('name'))}"
    for key, ok in (("models", lambda v: isinstance(v, str) and v), ("designs", is_label)):
        value = study.get(key)  # models: as the study file gives them (names or paths)
        if not isinstance(value, list) or not value or not all(ok(v) for v in value):
            return f"'study.{key}' must be a non-empty list of names, got {show(value)}"
    if not is_int(study.get("seed"), 0, 2**64):
        return f"'study.seed' must be a non-negative integer, got {show(study.get('seed'))}"
    if study.get("simulate_model") is not None and not isinstance(study["simulate_model"], str):
        return f"'study.simulate_model' must be a string or null, got {show(study['simulate_model'])}"
    sampler = study.get("sampler")
    if sampler is not None:
        if not isinstance(sampler, dict):
            return f"'study.sampler' must be an object, got {show(sampler)}"
        for key in ("chains", "tune", "draws", "max_treedepth"):
            if key in sampler and not is_int(sampler[key]):
                return f"'study.sampler.{key}' must be an integer, got {show(sampler[key])}"
        if "target_accept" in sampler and not is_number(sampler["target_accept"]):
            return f"'study.sampler.target_accept' must be a number, got {show(sampler['target_accept'])}"
        if "rescue" in sampler and not isinstance(sampler["rescue"], bool):
            return f"'study.sampler.rescue' must be true or false, got {show(sampler['rescue'])}"
        if "name" in sampler and not isinstance(sampler["name"], str):
            return f"'study.sampler.name' must be a string, got {show(sampler['name'])}"
    if m.get("sequential") is not None and not isinstance(m["sequential"], dict):
        return f"'sequential' must be an object or null, got {show(m['sequential'])}"
    refs = m.get("model_refs")
    if refs is not None and not (isinstance(refs, dict) and refs and all(
            is_label(k) and isinstance(v, str) for k, v in refs.items())):
        return f"'model_refs' must map model labels to references, got {show(refs)}"
    digests = m.get("model_digests")
    if digests is not None and not (isinstance(digests, dict) and all(
            v is None or isinstance(v, str) for v in digests.values())):
        return f"'model_digests' must map models to digests, got {show(digests)}"
    return None


def diff_manifests(old_manifest: dict, new_manifest: dict) -> str:
    old, new = old_manifest["study"], new_manifest["study"]
    old_digests = old_manifest.get("model_digests") or {}
    new_digests = new_manifest.get("model_digests") or {}
    changed = [k for k in sorted(set(old) | set(new))
               if k not in ("simulations", "output", "scheduler", "workers", "batch_size",
                            "base_dir", "description", "name")
               and old.get(k) != new.get(k)]
    changed += [f"source of model '{k}'" for k in sorted(set(old_digests) | set(new_digests))
                if old_digests.get(k) != new_digests.get(k)]
    if old_manifest.get("numerics") != new_manifest.get("numerics"):
        changed.append("numerics: " + describe_change(old_manifest.get("numerics"),
                                                      new_manifest.get("numerics") or {}))
    return "changed: " + ", ".join(changed) if changed else "different fingerprint"


@dataclass(frozen=True)
class Expected:
    """What this study's records must say, from its study.json: the model labels
    (``model_refs``, else ``study.models`` for stores written before model_refs), the design
    labels, the seed and the fingerprint.  A plan store (``kind = "plan"``) also holds the
    power streams ``LABEL~DESIGN_MODEL`` and designs of a grid that may grow between
    resumes, so there any design of the form CxGxR counts."""

    fingerprint: str
    seed: int
    models: tuple[str, ...]
    designs: tuple[str, ...]
    plan: bool

    @classmethod
    def of(cls, manifest: dict) -> Expected:
        study = manifest["study"]
        models = tuple(manifest["model_refs"]) if manifest.get("model_refs") else tuple(study["models"])
        return cls(manifest["fingerprint"], study["seed"], models, tuple(study["designs"]),
                   manifest.get("kind") == "plan")

    def model_problem(self, model: str) -> str | None:
        if model in self.models or (self.plan and any(model.startswith(f"{m}~") for m in self.models)):
            return None
        return f"model {show(model)} is no model of this study (its models: {', '.join(self.models)})"

    def design_problem(self, design: str) -> str | None:
        if design in self.designs:
            return None
        if self.plan:
            try:
                Design.from_label(design)
                return None
            except ValueError:
                pass
        return f"design {show(design)} is no design of this study (its designs: {', '.join(self.designs)})"


def foreign_problem(record: dict, path: Path | None, expected: Expected) -> str | None:
    """Why a well-formed record is not this study's record of the replicate ``path`` names
    (MODEL/DESIGN/rNNNNNN.json), or None.  Its model and design must be the study's, its
    path its own, its seed the one this study derives for that replicate
    (``sbc.seeding.replicate``: entropy = study seed, spawn key = (crc32 of the
    model label, crc32 of the design label, replicate)) and, when it carries one (records
    written since it was added), its fingerprint the study's.  A record copied from a study
    with another seed or fingerprint, or from another replicate, fails this check."""
    model, design, rep = record["model"], record["design"], record["rep"]
    problem = expected.model_problem(model) or expected.design_problem(design)
    if problem:
        return problem
    if path is not None and (path.parent.parent.name, path.parent.name, path.name) != \
            (model, design, f"r{rep:06d}.json"):
        return (f"it holds replicate {rep} of {model}/{design}, not the replicate its path "
                "names (copied or renamed)")
    key = seeding.replicate_key(model, design, rep)
    if record["seed_entropy"] != expected.seed or record["seed_key"] != key:
        return "its seed is not the one this study derives for that replicate (another study's)"
    fingerprint = record.get("fingerprint")
    if fingerprint is not None and fingerprint != expected.fingerprint:
        return (f"it was written by another study (fingerprint {show(fingerprint)}, this "
                f"study's {expected.fingerprint})")
    return None


def load_record(path: Path, expected: Expected) -> tuple[dict | None, str, str]:
    """(record, "", "") for a valid record of this study at ``path``, else (None, kind,
    reason) with kind "corrupt", "invalid" or "foreign" (the suffix it is set aside with)."""
    try:
        data = read_regular(path, MAX_RECORD_BYTES)
    except Unreadable as exc:
        return None, exc.kind, exc.reason
    try:
        record = loads(data)
    except (ValueError, RecursionError) as exc:
        return None, "corrupt", f"it is not valid JSON ({exc})"
    problem = digest_problem(data, record)
    if problem:
        return None, "corrupt", problem
    problem = record_problem(record)
    if problem:
        return None, "invalid", problem
    problem = foreign_problem(record, path, expected)
    if problem:
        return None, "foreign", problem
    return record, "", ""


def load_screen(path: Path, fingerprint: str,
                problem: Callable[[dict], str | None]) -> tuple[dict | None, str, str]:
    """(record, "", "") for a valid screen record of the study with ``fingerprint`` at
    ``path`` (screens/DESIGN/rNNNNNN.json) that passes ``problem`` (the caller's schema), else
    (None, kind, reason) as :func:`load_record` gives them."""
    try:
        data = read_regular(path, MAX_RECORD_BYTES)
        record = loads(data)
    except Unreadable as exc:
        return None, exc.kind, exc.reason
    except ValueError as exc:
        return None, "corrupt", f"it is not strict JSON ({exc})"
    reason = digest_problem(data, record) if isinstance(record, dict) else \
        f"it holds {json_type(record)} instead of a JSON object"
    kind = "corrupt" if reason else "foreign"
    if not reason:
        if record.get("fingerprint") != fingerprint:
            reason = "it was written by another study (fingerprint)"
        elif (record.get("design"), record.get("rep")) != (path.parent.name, _rep_of(path.name)):
            reason = "it holds another screen than its path names (copied or renamed)"
        else:
            kind, reason = "invalid", problem(record)
    if reason:
        return None, kind, reason
    return record, "", ""


def _rep_of(name: str) -> int | None:
    digits = name[1:-len(".json")]
    return int(digits) if digits.isdigit() else None
