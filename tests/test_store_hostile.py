"""The store trusts no file: real fault injection on a stored study, one class at a time.

1. records: every garble is caught by the one record schema (or by the digest written with
   the record), named on stderr by `sbc report` (which renames nothing) and by `sbc run`
   (which sets the file aside and refits the replicate); ranks end as those of an
   undisturbed run.
2. study.json of the wrong shape: a clear StoreError naming the file and the field.
3. links: the store's own files and directories as symbolic links are refused; temporary
   files are fresh names, never a link planted under the old fixed names; a record file
   that is a link is set aside unread.
4. the lock is an flock on the store directory: deleting or replacing `.lock` changes nothing.
5. a read-only store or parent: a clear StoreError, nothing changed (as root, the commands
   run in a child process without capabilities, held to the permission bits).
6. a hypothesis property test that does all of the above at random between runs.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import io
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from types import SimpleNamespace

import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from support import ROOT
from sbc.cli import main
from sbc.errors import StudyMismatchError
from sbc.replicate import RECORD_SCHEMA
from sbc.record import record_bytes
from sbc.store import Store

MODEL = ROOT / "tests/models/normal_mean.py"
SIMS = 8
STUDY = f"""
name = "hostile"
model = "{MODEL}"
seed = 7
simulations = {SIMS}
thin = 1
[[designs]]
cell_lines = 3
genes = 2
reps = 2
[sampler]
name = "exact"
draws = 99
"""
DESIGN_DIR = Path("replicates/normal_mean/3x2x2")
TABLES = ("replicates.parquet", "parameters.parquet", "ranks.nc")


def cli(*args) -> tuple[int, str]:
    """Run `sbc ARGS` in this process: (exit status, stderr); never a traceback."""
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        rc = main([str(a) for a in args])
    assert "Traceback" not in err.getvalue()
    return rc, err.getvalue()


def ranks_of(out: Path) -> pd.DataFrame:
    params = pd.read_parquet(out / "parameters.parquet")
    return params[["model", "design", "rep", "name", "truth", "rank", "n_ranked"]].sort_values(
        ["model", "design", "rep", "name"], ignore_index=True)


def snapshot(root: Path) -> dict:
    out = {}
    for p in sorted(root.rglob("*")):
        key = str(p.relative_to(root))
        if p.is_symlink():
            out[key] = "-> " + os.readlink(p)
        elif p.is_file():
            out[key] = hashlib.sha256(p.read_bytes()).hexdigest()
        else:
            out[key] = "dir"
    return out


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    """Undisturbed stores: `full` (SIMS replicates), `half` (3 of them), `other` (seed 8)."""
    root = tmp_path_factory.mktemp("hostile")
    study, other = root / "study.toml", root / "other.toml"
    study.write_text(STUDY)
    other.write_text(STUDY.replace("seed = 7", "seed = 8"))
    stores = {}
    for name, path, extra in (("full", study, []), ("half", study, ["--sims", "3"]),
                              ("other", other, [])):
        rc, err = cli("run", path, "--out", root / name, "--workers", "0", "--no-report", *extra)
        assert rc == 0, err
        stores[name] = root / name
    return SimpleNamespace(root=root, study=study, ranks=ranks_of(stores["full"]), **stores)


@pytest.fixture
def out(base, tmp_path):
    """A copy of the full store to damage."""
    target = tmp_path / "out"
    shutil.copytree(base.full, target, symlinks=True)
    return target


def record_path(out: Path, rep: int | str) -> Path:
    return out / DESIGN_DIR / (rep if isinstance(rep, str) else f"r{rep:06d}.json")


def rewrite(path: Path, garble, digest: str = "restamp") -> None:
    """Apply ``garble`` to the record at ``path``; ``digest``: "restamp" (as a writer bug
    would store it, so that the schema must catch it), "stale" or "drop"."""
    record = garble(json.loads(path.read_text()))
    if digest == "restamp" and isinstance(record, dict):
        path.write_bytes(record_bytes(record))
        return
    if digest == "drop" and isinstance(record, dict):
        record.pop("digest", None)
    path.write_text(json.dumps(record))


def _with(keys: tuple, value):
    def garble(record):
        target = record
        for key in keys[:-1]:
            target = target[key]
        target[keys[-1]] = value(target[keys[-1]]) if callable(value) else value
        return record
    return garble


# name -> (garble, kind it is set aside as, what the reason says)
GARBLES = {
    "rank list one short": (_with(("parameters", "rank"), lambda v: v[:-1]), "invalid",
                            "parameters.rank has 1 value(s) but parameters.name has 2"),
    "rank null": (_with(("parameters", "rank", 0), None), "invalid",
                  "parameters.rank[0] = null is not an integer in 0..n_ranked (99)"),
    "rank 'x'": (_with(("parameters", "rank", 1), "x"), "invalid",
                 'parameters.rank[1] = "x" is not an integer'),
    "parameters a list": (_with(("parameters",), lambda v: [v]), "invalid",
                          "'parameters' must be an object of equal-length lists, got a list"),
    "rank 10**6": (_with(("parameters", "rank", 0), 10**6), "invalid",
                   "parameters.rank[0] = 1000000 is not an integer in 0..n_ranked (99)"),
    "n_ranked 0": (_with(("n_ranked",), 0), "invalid", "'n_ranked' must be an integer >= 1, got 0"),
    "truth 'abc'": (_with(("parameters", "truth", 1), "abc"), "invalid",
                    'parameters.truth[1] = "abc" is not a finite number'),
    "unknown status": (_with(("status",), "finished"), "invalid", "'status' is \"finished\""),
    "unknown model": (_with(("model",), "zzz"), "foreign",
                      'model "zzz" is no model of this study (its models: normal_mean)'),
    "unknown design": (_with(("design",), "9x9x9"), "foreign", 'design "9x9x9" is no design'),
    "parameter named twice": (_with(("parameters", "name", 1), "mu[0]"), "invalid",
                              'parameters.name lists "mu[0]" more than once'),
    "name outside its group": (_with(("parameters", "name", 1), "sigma"), "invalid",
                               "is no element of its group"),
    "quantity rank 10**6": (_with(("quantities", "loglik", "rank"), 10**6), "invalid",
                            "quantities.loglik.rank = 1000000 is not an integer"),
    "quantity named like a parameter": (
        lambda r: {**r, "quantities": {"mu[0]": r["quantities"]["loglik"]}}, "invalid",
        'quantity name "mu[0]" is not a name apart'),
    "other schema": (_with(("schema",), RECORD_SCHEMA + 1), "invalid", "'schema' is 2, not 1"),
    "rep negative": (_with(("rep",), -1), "invalid", "'rep' must be an integer >= 0"),
    "seed of another replicate": (_with(("seed_key", 2), lambda v: v + 1), "foreign",
                                  "its seed is not the one this study derives"),
    "another fingerprint": (_with(("fingerprint",), "0123456789abcdef"), "foreign",
                            "written by another study"),
    "not an object": (lambda r: [r], "invalid", "it holds a list instead of a record"),
    "count a string": (_with(("n_divergent",), "3"), "invalid", "'n_divergent' must be an integer"),
}


# --- 1. records -------------------------------------------------------------------------
@pytest.mark.parametrize("garble", sorted(GARBLES))
def test_each_known_garble_is_caught_by_the_schema_and_named(garble, out):
    function, kind, reason = GARBLES[garble]
    victim = record_path(out, 1)
    rewrite(victim, function)
    stream = io.StringIO()
    reps, _ = Store(out, stream=stream).tables()  # never crashes
    assert len(reps) == SIMS - 1 and 1 not in set(reps["rep"])
    (line,) = stream.getvalue().splitlines()  # one line, naming the file and why
    assert f"skipped {victim}: {kind}: " in line and reason in line
    assert victim.exists()  # reading renames nothing


def test_garbled_records_are_named_by_report_set_aside_by_run_and_refitted(base, out, tmp_path):
    victim = tmp_path / "victim.txt"
    victim.write_text("not a record")
    for rep, garble in enumerate(("rank list one short", "truth 'abc'", "parameters a list",
                                  "unknown status", "n_ranked 0")):
        rewrite(record_path(out, rep), GARBLES[garble][0])
    # a valid-looking edit under the old digest: changed after it was written
    rewrite(record_path(out, 5), _with(("parameters", "truth", 0), lambda v: v + 0.5), "stale")
    shutil.copy(record_path(out, 6), record_path(out, 25))  # another replicate's name
    shutil.copy(base.other / DESIGN_DIR / "r000007.json", record_path(out, 7))  # other study
    record_path(out, 26).symlink_to(victim)
    (record_path(out, 27)).mkdir()
    bad = {record_path(out, r): k for r, k in ((0, "invalid"), (1, "invalid"), (2, "invalid"),
                                               (3, "invalid"), (4, "invalid"), (5, "corrupt"),
                                               (25, "foreign"), (7, "foreign"),
                                               (26, "invalid"), (27, "invalid"))}
    before = snapshot(out)
    rc, err = cli("report", out)
    assert rc == 0
    for path, kind in bad.items():
        assert f"skipped {path}: {kind}: " in err
    assert "changed after it was written" in err and "symbolic link" in err
    assert {k for k in snapshot(out) if "replicates/" in k} == \
        {k for k in before if "replicates/" in k}  # nothing renamed

    rc, err = cli("run", base.study, "--out", out, "--workers", "0", "--no-report")
    assert rc == 0
    for path, kind in bad.items():
        assert f"set aside {path} as {path.name}.{kind}-" in err
        assert len(list(path.parent.glob(f"{path.name}.{kind}-*"))) == 1
    assert f"{SIMS} replicates (1 already stored)" in err, err
    assert victim.read_text() == "not a record"
    pd.testing.assert_frame_equal(ranks_of(out), base.ranks)
    stream = io.StringIO()
    Store(out, stream=stream).tables()
    assert stream.getvalue() == ""  # the store is clean again


def test_a_record_that_cannot_be_stored_is_stored_as_a_failure_not_refitted_forever(tmp_path):
    import zlib

    manifest = {"fingerprint": "f" * 16, "model_digests": {},
                "study": {"name": "s", "models": ["m"], "designs": ["1x1x1"], "seed": 3}}
    store = Store.open_for_run(tmp_path / "out", manifest)
    record = {"schema": RECORD_SCHEMA, "model": "m", "design": "1x1x1", "rep": 0,
              "seed_entropy": 3, "seed_key": [zlib.crc32(b"m"), zlib.crc32(b"1x1x1"), 0],
              "status": "ok", "n_ranked": 9, "wall_seconds": 0.5,
              "parameters": {"name": ["a"], "group": ["a"], "truth": [float("inf")], "rank": [3]}}
    store.write_record(record)
    reps, params = store.tables()
    assert reps["status"].tolist() == ["failed"] and params.empty
    assert "parameters.truth[0] = null is not a finite number" in reps["error"][0]
    assert store.done() == {("m", "1x1x1", 0)}  # kept as data


# --- 2. study.json ------------------------------------------------------------------------
def _manifest_with(**changes):
    def damage(m):
        for key, value in changes.items():
            target = m
            *path, last = key.split("__")
            for k in path:
                target = target[k]
            target[last] = value
        return json.dumps(m)
    return damage


STUDY_DAMAGE = {
    "{}": (lambda m: "{}", "'fingerprint' must be a non-empty string, got null"),
    "[]": (lambda m: "[]", "it holds a list instead of a JSON object"),
    "null": (lambda m: "null", "it holds null instead of a JSON object"),
    "fingerprint a number": (_manifest_with(fingerprint=3),
                             "'fingerprint' must be a non-empty string, got 3"),
    "study a list": (_manifest_with(study=[]), "'study' must be an object, got []"),
    "seed a string": (_manifest_with(study__seed="7"), "'study.seed' must be a non-negative integer"),
    "models not a list": (_manifest_with(study__models="m"), "'study.models' must be a non-empty list"),
    "designs missing": (_manifest_with(study__designs=None), "'study.designs' must be a non-empty list"),
    "sampler setting a string": (_manifest_with(study__sampler__target_accept="high"),
                                 "'study.sampler.target_accept' must be a number"),
    "model_refs a list": (_manifest_with(model_refs=["x"]), "'model_refs' must map model labels"),
    "truncated": (lambda m: json.dumps(m)[:30], "is unreadable or corrupt"),
}


@pytest.mark.parametrize("damage", sorted(STUDY_DAMAGE))
def test_damaged_study_json_is_a_clear_error_for_run_and_report(damage, base, out):
    function, expected = STUDY_DAMAGE[damage]
    path = out / "study.json"
    path.write_text(function(json.loads(path.read_text())))
    before = snapshot(out)
    for args in (("run", base.study, "--out", out, "--workers", "0"), ("report", out)):
        rc, err = cli(*args)
        assert rc == 2
        assert str(path) in err and expected in err, err
        assert "missing" not in err
    assert snapshot(out) == before


def test_study_json_that_is_a_directory(base, out):
    (out / "study.json").unlink()
    (out / "study.json").mkdir()
    rc, err = cli("report", out)
    assert rc == 2 and "study.json is unusable: it is a directory" in err


def test_a_store_taken_over_by_another_study_while_starting_is_refused(tmp_path):
    manifest = {"fingerprint": "a" * 16, "model_digests": {},
                "study": {"name": "s", "models": ["m"], "designs": ["1x1x1"], "seed": 3}}
    store = Store.open_for_run(tmp_path / "out", manifest)
    other = {**manifest, "fingerprint": "b" * 16}  # a second run created it first
    (tmp_path / "out/study.json").write_text(json.dumps(other))
    with pytest.raises(StudyMismatchError, match="taken over by another study"):
        with store.exclusive():
            pass


# --- 3. links -----------------------------------------------------------------------------
OWN = ("study.json", "replicates.parquet", "parameters.parquet", "ranks.nc", "report.html",
       "summary.csv", "replicates", "replicates/normal_mean", str(DESIGN_DIR))


@pytest.mark.parametrize("name", OWN)
def test_a_store_whose_own_files_are_links_is_refused(name, base, out, tmp_path):
    path = out / name
    elsewhere = tmp_path / "elsewhere"
    if path.exists():
        shutil.move(path, elsewhere)
    else:
        elsewhere.write_text("<html>not ours</html>")
    path.symlink_to(elsewhere, target_is_directory=elsewhere.is_dir())
    before, outside = snapshot(out), snapshot(tmp_path)
    for args in (("run", base.study, "--out", out, "--workers", "0"), ("report", out)):
        rc, err = cli(*args)
        assert rc == 2
        assert f"{path} is a symbolic link" in err and "never reads or writes" in err
    assert snapshot(out) == before and snapshot(tmp_path) == outside


def test_temporary_files_are_fresh_names_never_planted_links(base, out, tmp_path):
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    for name in TABLES:  # the fixed names older versions wrote through
        (out / f".{name}.tmp").symlink_to(victim)
    rc, err = cli("report", out)
    assert rc == 0, err
    assert victim.read_text() == "precious"
    pd.testing.assert_frame_equal(ranks_of(out), base.ranks)


# --- 4. the lock --------------------------------------------------------------------------
def test_the_lock_cannot_be_deleted_away(base, out):
    with Store(out).exclusive():  # as if another `sbc run` were writing
        for planted in (out / ".lock", out / "lock"):
            if planted.exists():
                planted.unlink()
        rc, err = cli("run", base.study, "--out", out, "--workers", "0", "--sims", "9")
        assert rc == 2 and "another sbc process is writing to" in err
    assert not record_path(out, 8).exists()


def test_a_lock_file_that_is_a_directory_changes_nothing(base, out):
    (out / ".lock").mkdir()
    rc, err = cli("run", base.study, "--out", out, "--workers", "0", "--no-report")
    assert rc == 0, err


# --- 5. read-only -------------------------------------------------------------------------
# Root (CAP_DAC_OVERRIDE) writes into read-only directories anyway.  As root, the commands
# under test therefore run in a child interpreter that first gives up every capability
# (capset to empty sets, which needs no privilege) after setting no_new_privs (so no program
# it executes regains them, as root's programs otherwise do): still uid 0, the owner of the
# store, so it reads everything it read before, but held to the permission bits like any
# user.  Plain Linux and ctypes: no other user, no sudo, no capability needed, so it works in
# a CI container running as root.  A probe checks that the child really cannot write into a
# directory of mode 555 before a test relies on it.
DROP_CAPABILITIES = """
import ctypes, os, sys
_libc = ctypes.CDLL(None, use_errno=True)
if _libc.prctl(38, 1, 0, 0, 0) != 0:  # PR_SET_NO_NEW_PRIVS
    sys.exit(f"prctl(PR_SET_NO_NEW_PRIVS): {os.strerror(ctypes.get_errno())}")
_header = (ctypes.c_uint32 * 2)(0x20080522, 0)  # _LINUX_CAPABILITY_VERSION_3, this process
_none = (ctypes.c_uint32 * 6)()  # effective, permitted, inheritable (2 x 32 bits each): empty
if _libc.capset(_header, _none) != 0:
    sys.exit(f"capset: {os.strerror(ctypes.get_errno())}")
"""
WRITE_PROBE = """
import tempfile
d = tempfile.mkdtemp()
os.chmod(d, 0o555)
try:
    open(os.path.join(d, "probe"), "w").close()
    status = 3  # written: the permission bits are bypassed still
except PermissionError:
    status = 0
finally:
    os.chmod(d, 0o755)
    if os.path.exists(os.path.join(d, "probe")):
        os.remove(os.path.join(d, "probe"))
    os.rmdir(d)
sys.exit(status)
"""


def _permissions_bypassed() -> bool:
    """Root (with CAP_DAC_OVERRIDE) writes into read-only directories anyway."""
    if os.geteuid() != 0:
        return False
    with tempfile.TemporaryDirectory() as tmp:
        os.chmod(tmp, 0o555)
        try:
            Path(tmp, "probe").touch()
            return True
        except PermissionError:
            return False
        finally:
            os.chmod(tmp, 0o755)


def _without_capabilities(code: str, *args, timeout: float = 600) -> subprocess.CompletedProcess:
    """Python ``code`` with ``args`` in a child interpreter without capabilities."""
    return subprocess.run([sys.executable, "-c", DROP_CAPABILITIES + code, *map(str, args)],
                          capture_output=True, text=True, cwd=ROOT, timeout=timeout)


@functools.cache
def _held_to_permissions() -> tuple[bool | None, str]:
    """(True: run in a child without capabilities; False: in this process, which the
    permission bits bind already; None: neither works, with why)."""
    if not _permissions_bypassed():
        return False, ""
    why = "running as root, which writes to read-only directories, and "
    if not sys.platform.startswith("linux"):
        return None, why + "dropping root's capabilities is Linux's"
    try:
        proc = _without_capabilities(WRITE_PROBE, timeout=60)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return None, why + f"the child without capabilities did not run: {exc}"
    if proc.returncode == 3:
        return None, why + "a child that gave up every capability (capset) still writes to a " \
            "directory of mode 555"
    if proc.returncode != 0:
        return None, why + f"a child could not give up its capabilities (exit " \
            f"{proc.returncode}): {proc.stderr.strip()[-300:]}"
    return True, ""


CLI_CHILD = "from sbc.cli import main\nsys.exit(main(sys.argv[1:]))\n"


@pytest.fixture
def cli_held_to_permissions():
    """`sbc ARGS` -> (exit status, stderr) as a process that the permission bits bind: this
    one when they bind it (then :func:`cli`), else a child without capabilities."""
    child, why = _held_to_permissions()
    if child is None:
        pytest.skip(why)
    if not child:
        return cli

    def run(*args) -> tuple[int, str]:
        proc = _without_capabilities(CLI_CHILD, *args)
        assert "Traceback" not in proc.stderr, proc.stderr
        return proc.returncode, proc.stderr
    return run


def test_the_child_without_capabilities_is_held_to_the_permission_bits(tmp_path):
    """What the read-only tests rely on, as root: the child cannot create or delete files in
    a directory of mode 555, nor can a program it runs, but it reads the directory and writes
    where the mode allows (as the store's owner it may still chmod it, as any owner may)."""
    child, why = _held_to_permissions()
    if child is None:
        pytest.skip(why)
    if not child:
        pytest.skip("not root: the read-only tests run in this process, which the permission "
                    "bits bind already")
    ro = tmp_path / "ro"
    ro.mkdir()
    (ro / "kept.txt").write_text("kept")
    ro.chmod(0o555)
    script = ("import pathlib, subprocess\nd = pathlib.Path(sys.argv[1])\n"
              "assert d.joinpath('kept.txt').read_text() == 'kept'\n"
              "for act in (lambda: d.joinpath('new').touch(),\n"
              "            lambda: d.joinpath('kept.txt').unlink()):\n"
              "    try:\n        act()\n    except PermissionError:\n        continue\n"
              "    sys.exit('not denied')\n"
              "d.parent.joinpath('rw').mkdir()\n"
              # a program it runs does not regain them (root's programs otherwise do)
              "if subprocess.run(['touch', str(d / 'by-exec')], capture_output=True).returncode == 0:\n"
              "    sys.exit('a program it ran wrote into the read-only directory')\n")
    try:
        proc = _without_capabilities(script, ro, timeout=60)
    finally:
        ro.chmod(0o755)
    assert proc.returncode == 0, proc.stderr
    assert sorted(p.name for p in ro.iterdir()) == ["kept.txt"] and (tmp_path / "rw").is_dir()


@pytest.mark.parametrize("where", ["store", "design directory"])
def test_read_only_store_is_a_clear_error_and_nothing_changes(where, base, out,
                                                              cli_held_to_permissions):
    cli = cli_held_to_permissions
    record_path(out, 3).write_text("{")  # would be set aside, if the store were writable
    target = out if where == "store" else out / DESIGN_DIR
    before = snapshot(out)
    target.chmod(0o555)
    try:
        rc, err = cli("run", base.study, "--out", out, "--workers", "0", "--sims", "9")
        assert rc == 2 and f"cannot write to {target}" in err and "chmod u+w" in err
        if where == "store":
            rc, err = cli("report", out)
            assert rc == 2 and f"cannot write {out}" in err and "writable" in err
    finally:
        target.chmod(0o755)
    assert snapshot(out) == before


def test_read_only_parent_is_a_clear_error(base, tmp_path, cli_held_to_permissions):
    cli = cli_held_to_permissions
    parent = tmp_path / "ro"
    parent.mkdir()
    parent.chmod(0o555)
    try:
        rc, err = cli("run", base.study, "--out", parent / "out", "--workers", "0")
    finally:
        parent.chmod(0o755)
    assert rc == 2 and "cannot write to output directory" in err
    assert list(parent.iterdir()) == []


# --- 6. everything at random, between runs --------------------------------------------------
NAMES = [f"r{i:06d}.json" for i in range(SIMS)] + ["r000025.json"]
reps = st.integers(0, SIMS - 1)
names = st.sampled_from(NAMES)
OPERATIONS = st.one_of(
    st.tuples(st.just("truncate"), reps, st.floats(0, 1, exclude_max=True)),
    st.tuples(st.just("flip"), reps, st.integers(0, 10**6), st.integers(1, 255)),
    st.tuples(st.just("copy"), reps, names),
    st.tuples(st.just("swap"), reps, reps),
    st.tuples(st.just("link"), names, st.sampled_from(["record", "outside", "dangling", "table"])),
    st.tuples(st.just("delete"), reps),
    st.tuples(st.just("garble"), reps, st.sampled_from(sorted(GARBLES)),
              st.sampled_from(["restamp", "stale", "drop"])),
    st.tuples(st.just("foreign"), reps),
    st.tuples(st.just("directory"), names),
    st.tuples(st.just("table"), st.sampled_from(TABLES),
              st.sampled_from(["truncate", "garbage", "delete", "link", "tmp-link"])),
    st.tuples(st.just("study"), st.sampled_from(["{}", "[]", "null", "truncate", "link"])),
)


def _apply(op, out: Path, base, outside: Path) -> None:
    kind, *args = op
    design = out / DESIGN_DIR
    if kind in ("truncate", "flip", "copy", "swap", "garble", "foreign", "delete"):
        path = design / NAMES[args[0]]
        if not (path.is_file() and not path.is_symlink()):
            return
        if kind == "truncate":
            data = path.read_bytes()
            path.write_bytes(data[:int(args[1] * len(data))])
        elif kind == "flip":
            data = bytearray(path.read_bytes())
            if data:
                i = args[1] % len(data)
                data[i] = (data[i] + args[2]) % 256
                path.write_bytes(bytes(data))
        elif kind == "copy":
            target = design / args[1]
            if target != path and not target.is_symlink() and not target.is_dir():
                shutil.copyfile(path, target)
        elif kind == "swap":
            other = design / NAMES[args[1]]
            if other.is_file() and not other.is_symlink():
                a, b = path.read_bytes(), other.read_bytes()
                path.write_bytes(b)
                other.write_bytes(a)
        elif kind == "garble":
            with contextlib.suppress(ValueError, KeyError, IndexError, TypeError):
                json.loads(path.read_text())  # only records that still parse
                rewrite(path, GARBLES[args[1]][0], args[2])
        elif kind == "foreign":
            shutil.copyfile(base.other / DESIGN_DIR / path.name, path)
        else:
            path.unlink()
    elif kind in ("link", "directory"):
        path = design / args[0]
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        elif os.path.lexists(path):
            path.unlink()
        if kind == "directory":
            path.mkdir()
        else:
            target = {"record": "r000000.json", "outside": str(outside / "victim.txt"),
                      "dangling": "nowhere.json", "table": "../../../parameters.parquet"}[args[1]]
            path.symlink_to(target)
    elif kind == "table":
        path = out / args[0]
        if args[1] == "tmp-link":
            if not os.path.lexists(out / f".{args[0]}.tmp"):
                (out / f".{args[0]}.tmp").symlink_to(outside / "victim.txt")
        elif path.is_symlink():
            return
        elif args[1] == "truncate" and path.exists():
            path.write_bytes(path.read_bytes()[:100])
        elif args[1] == "garbage":
            path.write_bytes(b"\x00garbage" * 10)
        elif args[1] == "delete" and path.exists():
            path.unlink()
        elif args[1] == "link":
            path.unlink(missing_ok=True)
            path.symlink_to(outside / "victim.txt")
    else:  # study.json
        path = out / "study.json"
        if path.is_symlink():
            return
        text = path.read_text()
        if args[0] == "link":
            (outside / "study.json").write_text(text)
            path.unlink()
            path.symlink_to(outside / "study.json")
        else:
            path.write_text(text[:len(text) // 2] if args[0] == "truncate" else args[0])


def _classify(path: Path, originals: dict[str, bytes]) -> str:
    """"same" (must be kept and not named) or "bad" (must be named and set aside): with
    the digest over a record's bytes, any change of a byte is a damaged record."""
    if path.is_symlink() or not path.is_file():
        return "bad"
    return "same" if originals.get(path.name) == path.read_bytes() else "bad"


@settings(max_examples=10, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(source=st.sampled_from(["full", "full", "half"]),
       ops=st.lists(OPERATIONS, min_size=2, max_size=8))
def test_any_damage_between_runs_is_named_set_aside_and_refitted(base, source, ops):
    with tempfile.TemporaryDirectory(dir=base.root) as tmp:
        out, outside = Path(tmp) / "out", Path(tmp) / "outside"
        outside.mkdir()
        (outside / "victim.txt").write_text("precious")
        src = getattr(base, source)
        shutil.copytree(src, out, symlinks=True)
        originals = {p.name: p.read_bytes() for p in (src / DESIGN_DIR).iterdir()}
        study_text = (out / "study.json").read_text()
        for op in ops:
            _apply(op, out, base, outside)
        run = ("run", base.study, "--out", out, "--workers", "0", "--no-report")

        links = [out / n for n in ("study.json", *TABLES) if (out / n).is_symlink()]
        study_ok = not links and (out / "study.json").read_text() == study_text
        if links or not study_ok:  # refused, untouched; then fixed as a user would
            before = snapshot(out)
            for args in (("report", out), run):
                rc, err = cli(*args)
                assert rc == 2 and ("symbolic link" in err or "study.json" in err), err
            assert snapshot(out) == before
            for link in links:
                link.unlink()
            (out / "study.json").write_text(study_text)

        design = out / DESIGN_DIR
        status = {p: _classify(p, originals) for p in design.iterdir() if
                  p.name.startswith("r") and p.name.endswith(".json")}
        bad = [p for p, s in status.items() if s == "bad"]
        listing = sorted(os.listdir(design))
        rc, err = cli("report", out)
        assert rc == 0, err
        for path in bad:
            assert f"skipped {path}: " in err
        assert sorted(os.listdir(design)) == listing  # `sbc report` renames nothing

        rc, err = cli(*run)
        assert rc == 0, err
        for path in bad:
            assert f"set aside {path} as {path.name}." in err
            assert list(design.glob(f"{path.name}.*-*"))
        for path, s in status.items():
            if s == "same":
                assert f"{path}:" not in err and f"{path} as" not in err
        pd.testing.assert_frame_equal(ranks_of(out), base.ranks)  # never mixed, nothing lost
        fingerprint = json.loads(study_text)["fingerprint"]
        for path in design.glob("r*.json"):
            assert not path.is_symlink() and json.loads(path.read_text())["rep"] < SIMS
            assert json.loads(path.read_text()).get("fingerprint", fingerprint) == fingerprint
        assert (outside / "victim.txt").read_text() == "precious"


# --- 7. something in the way of what the store creates ------------------------------------
IN_THE_WAY = ("replicates", "replicates/normal_mean", str(DESIGN_DIR))


@pytest.mark.parametrize("name", IN_THE_WAY)
def test_a_file_where_a_store_directory_belongs_is_named_with_the_fix(name, base, out, tmp_path):
    """A plain file where the run must create (or use) a directory: refused before any fit,
    naming the file, saying that it is in the way and what to do; nothing stored changes,
    and once it is moved away the run resumes with every stored replicate."""
    target = out / name
    shutil.move(target, tmp_path / "aside")  # the directory, kept to put back
    target.write_text("a note a user saved here")
    before = snapshot(out)
    rc, err = cli("run", base.study, "--out", out, "--workers", "0", "--sims", str(SIMS + 1))
    assert rc == 2
    assert f"{target} is a file, where sbc needs a directory of that name" in err, err
    assert f"mv {target} {target}.moved" in err and "nothing stored was changed" in err
    assert "free disk space" not in err and "permissions" not in err
    assert snapshot(out) == before
    target.unlink()
    shutil.move(tmp_path / "aside", target)
    rc, err = cli("run", base.study, "--out", out, "--workers", "0", "--sims", str(SIMS + 1),
                  "--no-report")
    assert rc == 0, err
    assert f"{SIMS + 1} replicates ({SIMS} already stored)" in err, err


def test_a_file_where_the_output_directory_or_its_parent_belongs(base, tmp_path):
    blocker = tmp_path / "results"
    blocker.write_text("keep me")
    for out in (blocker, blocker / "study"):
        rc, err = cli("run", base.study, "--out", out, "--workers", "0")
        assert rc == 2 and f"{blocker} is a file" in err, err
        assert "--out" in err or "Move it away" in err
    rc, err = cli("fit", base.study, "--out", blocker / "fit")
    assert rc == 2 and f"{blocker} is a file, where sbc needs a directory" in err, err
    assert blocker.read_text() == "keep me"


def test_a_directory_where_the_store_writes_a_file_is_named(base, out):
    (out / "report.html").unlink(missing_ok=True)
    (out / "report.html").mkdir()
    rc, err = cli("report", out)
    assert rc == 2 and f"{out / 'report.html'} is a directory, where sbc needs to write" in err
    pd.testing.assert_frame_equal(ranks_of(out), base.ranks)


def test_every_directory_the_store_creates_names_a_file_in_the_way(tmp_path):
    """Writes that create directories (records, screens, top-level files) go through one
    helper: a file at any level is a StoreError naming it, whatever the depth."""
    from sbc.errors import StoreError
    from sbc.storefiles import atomic_write_bytes, make_dirs

    (tmp_path / "a").write_text("x")
    for path in (tmp_path / "a", tmp_path / "a/b/c"):
        with pytest.raises(StoreError, match=f"{tmp_path / 'a'} is a file, where sbc needs"):
            make_dirs(path)
        with pytest.raises(StoreError, match=f"{tmp_path / 'a'} is a file"):
            atomic_write_bytes(path / "r000001.json", b"{}")
    assert (tmp_path / "a").read_text() == "x"


def test_a_genome_plan_screen_directory_in_the_way_is_refused_before_anything_runs(tmp_path):
    from sbc.errors import StoreError

    manifest = {"fingerprint": "g" * 16, "kind": "genome-plan", "model_digests": {},
                "study": {"name": "g", "models": ["crispr_guides"], "designs": ["2x300x2x3x250"],
                          "seed": 3}}
    store = Store.open_for_run(tmp_path / "out", manifest)
    (tmp_path / "out/screens").mkdir()
    (tmp_path / "out/screens/2x300x2x3x250").write_text("not a directory")
    with pytest.raises(StoreError, match="2x300x2x3x250 is a file, where sbc needs a directory"):
        with store.exclusive():
            pass


# --- 8. a report describes what the store holds when it is written ------------------------
def test_report_is_refused_while_a_run_writes_and_changes_nothing(base, out):
    rc, _ = cli("report", out)
    assert rc == 0
    before = snapshot(out)
    with Store(out).exclusive():  # as a running `sbc run` holds it
        rc, err = cli("report", out)
    assert rc == 2 and f"another sbc process (a run, or a report) is writing to {out} now" \
        in err, err
    assert "run `sbc report` again" in err
    assert snapshot(out) == before


def test_no_run_can_add_replicates_while_a_report_is_being_written(base, out, monkeypatch):
    """The report is read and written under the store's lock: a run started while it is
    drawn is refused, so the report (and its tables) hold exactly the store's replicates."""
    import sbc.report

    build = sbc.report.build_report
    attempts = []

    def concurrent_run_then_build(*args, **kwargs):
        attempts.append(cli("run", base.study, "--out", out, "--workers", "0", "--sims",
                            str(SIMS + 4)))
        return build(*args, **kwargs)

    monkeypatch.setattr(sbc.report, "build_report", concurrent_run_then_build)
    rc, err = cli("report", out)
    assert rc == 0, err
    (run_rc, run_err), = attempts
    assert run_rc == 2 and "another sbc process is writing to" in run_err
    stored = len(list((out / DESIGN_DIR).glob("r*.json")))
    assert stored == SIMS
    assert len(pd.read_parquet(out / "replicates.parquet")) == stored
    assert f"{SIMS} / {SIMS}" in (out / "report.html").read_text()  # fits ok / total


# --- 9. a plan's store gets no study report ----------------------------------------------
PLAN = f"""
name = "hostile_plan"
seed = 11
model = "{ROOT / 'tests/plan_models/normal_mean.py'}"
probability = 0.8
[space]
cell_lines = [2, 3]
genes = [2]
reps = [2]
[target]
quantity = "mu"
criterion = "width"
below = 0.5
[search]
batch = 10
max_simulations = 20
[sampler]
name = "exact"
draws = 99
"""


def test_sbc_report_on_a_plan_store_points_at_sbc_plan_and_changes_nothing(tmp_path):
    from sbc.errors import StoreError
    from sbc.report import write_report

    plan = tmp_path / "plan.toml"
    plan.write_text(PLAN)
    out = tmp_path / "plan_out"
    rc, err = cli("plan", plan, "--out", out, "--workers", "0")
    assert rc == 0, err
    assert "design plan" in (out / "report.html").read_text().lower() or \
        "P(target met)" in (out / "report.html").read_text()
    before = snapshot(out)
    rc, err = cli("report", out)
    assert rc == 2
    assert "holds the design plan 'hostile_plan' (written by `sbc plan`)" in err, err
    assert f"sbc plan PLAN_FILE --out {out}" in err and "report.html" in err
    with pytest.raises(StoreError, match="not a calibration study"):
        write_report(Store(out))
    assert snapshot(out) == before
    rc, err = cli("plan", plan, "--out", out, "--workers", "0")  # what the message says
    assert rc == 0 and snapshot(out).keys() == before.keys()


def test_sbc_report_on_a_genome_plan_store_is_refused(tmp_path):
    manifest = {"fingerprint": "g" * 16, "kind": "genome-plan", "model_digests": {},
                "study": {"name": "genome", "models": ["crispr_guides"],
                          "designs": ["2x300x2x3x250"], "seed": 3}}
    Store.open_for_run(tmp_path / "out", manifest)
    (tmp_path / "out/summary.md").write_text("# the plan's summary\n")
    before = snapshot(tmp_path / "out")
    rc, err = cli("report", tmp_path / "out")
    assert rc == 2 and "holds the design plan 'genome'" in err and "summary.md" in err, err
    assert snapshot(tmp_path / "out") == before
