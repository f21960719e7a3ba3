"""Pure pieces of the hardening work, checked without a server: URI redaction, storage
error messages, redis.conf quoting, reply classification, the socket folder check,
record validation, report chunking and curation row rules."""

from __future__ import annotations

import errno
import os
import re
import sqlite3
import subprocess
from pathlib import Path

import pytest

from kgrag.config import redact_uri
from kgrag.errors import GraphUnavailableError, StorageError
from kgrag.graph.falkordb_server import EmbeddedFalkorDB, check_private_dir, conf_quote, reply_state
from kgrag.graph.neo4j_store import scrub
from kgrag.paths import is_storage_error, private_dir, private_open, storage_error, write_private


@pytest.mark.parametrize("uri, shown", [
    ("neo4j://kim:s3cret@db:7687", "neo4j://***@db:7687"),
    ("neo4j+s://kim:p@ss@db.example:7687/neo4j", "neo4j+s://***@db.example:7687/neo4j"),
    ("redis://:pw@host:6379/0", "redis://***@host:6379/0"),
    ("bolt://db:7687", "bolt://db:7687"),
    ("unix:///tmp/x.sock", "unix:///tmp/x.sock"),
    ("see neo4j://a:b@h and bolt://c:d@i", "see neo4j://***@h and bolt://***@i"),
])
def test_redact_uri(uri, shown):
    assert redact_uri(uri) == shown


def test_scrub_masks_the_uri_and_its_decoded_password():
    uri = "neo4j://kim:p%40ssw0rd@db:7687"
    msg = f"Given URI: '{uri}'. Login p@ssw0rd refused; secret hunter22"
    out = scrub(msg, uri, "hunter22")
    assert "p@ssw0rd" not in out and "p%40ssw0rd" not in out and "hunter22" not in out
    assert "neo4j://***@db:7687" in out


def test_storage_errors_name_the_cause_and_the_fix(tmp_path):
    full = storage_error(OSError(errno.ENOSPC, "No space left on device"), tmp_path / "x", "write")
    assert isinstance(full, StorageError) and "disk is full" in full.message and "df -h" in full.fix
    ro = storage_error(OSError(errno.EROFS, "Read-only file system"), tmp_path / "x", "write")
    assert "read-only" in ro.message and "KGRAG_HOME" in ro.fix
    denied = storage_error(OSError(errno.EACCES, "Permission denied"), tmp_path / "x", "write")
    assert "permission denied" in denied.message and "ls -ld" in denied.fix
    e = sqlite3.OperationalError("database or disk is full")
    assert is_storage_error(e) and "disk is full" in storage_error(e, tmp_path / "d.sqlite", "write").message
    assert not is_storage_error(sqlite3.OperationalError("no such table: x"))
    assert not is_storage_error(OSError(errno.ENOENT, "missing"))


def test_private_paths(tmp_path):
    d = private_dir(tmp_path / "a" / "b")
    assert oct(d.stat().st_mode & 0o777) == oct(0o700) and oct((tmp_path / "a").stat().st_mode & 0o777) == oct(0o700)
    with private_open(d / "f.txt") as f:
        f.write("x")
    write_private(d / "g.txt", "y")
    assert (d / "f.txt").stat().st_mode & 0o777 == 0o600 and (d / "g.txt").stat().st_mode & 0o777 == 0o600
    assert (d / "g.txt").read_text() == "y" and sorted(p.name for p in d.iterdir()) == ["f.txt", "g.txt"]


def test_conf_quote_escapes_what_redis_conf_would_split_on():
    assert conf_quote("/plain/path") == '"/plain/path"'
    assert conf_quote('/we"ird \\ home') == '"/we\\"ird \\\\ home"'
    assert conf_quote("/caf\u00e9\n") == '"/caf\\xc3\\xa9\\x0a"'


@pytest.mark.parametrize("reply, state", [
    ("MISCONF Errors writing to the AOF file: No space left on device", "disk_full"),
    ("OOM command not allowed when used memory > 'maxmemory'.", "oom"),
    ("LOADING Redis is loading the dataset in memory", "loading"),
    ("WRONGPASS invalid username-password pair", "auth"),
    ("ERR write failed: No space left on device", "disk_full"),
    ("ERR unknown command", None),
])
def test_reply_state(reply, state):
    assert reply_state(reply) == state


def test_socket_folder_check(tmp_path):
    good = tmp_path / "good"
    good.mkdir(mode=0o700)
    check_private_dir(good)
    check_private_dir(tmp_path / "absent")  # not made yet: fine
    link = tmp_path / "link"
    link.symlink_to(good)
    with pytest.raises(GraphUnavailableError, match="symbolic link"):
        check_private_dir(link)
    wide = tmp_path / "wide"
    wide.mkdir()
    os.chmod(wide, 0o755)
    with pytest.raises(GraphUnavailableError, match="mode 0755"):
        check_private_dir(wide)
    if os.getuid() == 0:
        foreign = tmp_path / "foreign"
        foreign.mkdir(mode=0o700)
        os.chown(foreign, 65534, 65534)
        with pytest.raises(GraphUnavailableError, match="owned by uid 65534"):
            check_private_dir(foreign)


def test_processes_that_are_not_our_server_are_never_ours(tmp_path):
    srv = EmbeddedFalkorDB(tmp_path / "graph")
    p = subprocess.Popen(["sleep", "30"])
    try:
        assert not srv.is_our_server(p.pid)
        assert not srv.is_our_server(os.getpid())
        assert not srv.is_our_server(1)
        assert srv.server_pids() == [] and srv.pid() is None and not srv.lock_held()
    finally:
        p.kill()
        p.wait()


def test_deep_home_socket_dir_is_bound_to_its_home(tmp_path):
    deep = tmp_path / ("x" * 80) / "graph"
    deep.mkdir(parents=True)
    a = EmbeddedFalkorDB(deep)
    d = a._make_socket_dir()
    try:
        assert d.parent == Path(__import__("tempfile").gettempdir()) and d.name.startswith(a._socket_prefix)
        assert a.socket_dir == d and (d.stat().st_mode & 0o777) == 0o700
        # a copy of the home does not reuse the original's socket folder
        copy = tmp_path / ("y" * 80) / "graph"
        copy.mkdir(parents=True)
        (copy / "socket_dir").write_text(str(d))
        assert EmbeddedFalkorDB(copy).socket_dir == copy
    finally:
        d.rmdir()


def test_validate_refuses_bad_ids_and_text():
    from kgrag.ingest.pipeline import RecordError, validate
    from kgrag.ingest.readers.base import RawRecord

    def v(d):
        return validate(RawRecord("m:1", data=d), 20_000)

    assert v({"id": " s1 ", "report": "Clear."})["id"] == "s1"
    for d, needle in [({"id": "a\x00b", "report": "x"}, "U+0000"), ({"id": "a\nb", "report": "x"}, "U+000A"),
                      ({"id": "z" * 300, "report": "x"}, "over the limit"),
                      ({"id": "ok", "report": "x\x00y"}, "NUL character at offset 1"),
                      ({"id": "ok", "report": "x", "questions": [{"question": "\ud83d?"}]}, "lone surrogate"),
                      ({"id": False, "report": "x"}, "must be a string")]:
        with pytest.raises(RecordError, match=re.escape(needle)):
            v(d)


def test_long_text_is_cut_between_sentences():
    from kgrag.ingest.extract import split_long

    text = " ".join(f"Sentence number {i} is here." for i in range(400))
    pieces = split_long(text, limit=500)
    assert all(len(t) <= 500 for _, t in pieces) and len(pieces) > 10
    assert "".join(t for _, t in pieces) == text
    assert all(text[o:o + len(t)] == t for o, t in pieces)
    assert all(t.rstrip().endswith(".") for _, t in pieces[:-1])
    words = split_long("no sentence end " * 100, limit=300)  # no sentence end: cut after a space
    assert all(len(t) <= 300 and t.endswith(" ") for _, t in words[:-1])
    assert split_long("   ") == [] and split_long("short.") == [(0, "short.")]


def test_curation_rows_duplicates_and_p_edits():
    from kgrag.kg.curate import validate_rows

    existing = {("a", "b"): {"status": "proposed", "p": 0.25, "note": None, "locked": False},
                ("a", "c"): {"status": "accepted", "p": 0.5, "note": None, "locked": False}}
    row = {"src": "a", "dst": "b", "status": "accepted", "p": "0.25", "locked": "", "reviewed_by": "ana", "note": ""}
    ok, errors = validate_rows([row, dict(row)], existing, None)
    assert not errors and len(ok) == 1 and ok[0]["p"] is None and ok[0]["changed"]
    ok, errors = validate_rows([row, {**row, "status": "rejected", "reviewed_by": "bo"}], existing, None)
    assert len(errors) == 1 and errors[0].startswith("row 3: edge 'a' -> 'b' is also on row 2 with a different ")
    assert "reviewed_by" in errors[0] and "status" in errors[0]
    ok, errors = validate_rows([{"src": "a", "dst": "c", "status": "accepted", "p": "0.75", "reviewed_by": "bo"}],
                               existing, None)
    assert not errors and ok[0]["p"] == 0.75 and ok[0]["changed"] and ok[0]["locked"]
    _, errors = validate_rows([{"src": "a", "dst": "c", "status": "accepted", "p": "nan"}], existing, "x")
    assert errors and "not a number in [0, 1]" in errors[0]
