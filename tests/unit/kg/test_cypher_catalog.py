import re

import pytest

from kgrag import cypher

ALL = cypher.all_files()


def test_there_are_statements():
    assert len(ALL) >= 15


@pytest.mark.parametrize("rel,text", ALL, ids=[r for r, _ in ALL])
def test_header_params_match_usage(rel, text):
    name = rel.rsplit("/", 1)[-1][: -len(".cypher")]
    params, cols = cypher._parse_header(name, text)
    assert cypher.used_params(text) == params, f"{rel}: header params differ from the $params used"


@pytest.mark.parametrize("rel,text", ALL, ids=[r for r, _ in ALL])
def test_header_columns_match_return(rel, text):
    name = rel.rsplit("/", 1)[-1][: -len(".cypher")]
    _, cols = cypher._parse_header(name, text)
    body = cypher.strip_comments(text)
    m = re.search(r"\bRETURN\b(.*?)(\bORDER BY\b|$)", body, re.S)
    if not cols:
        assert m is None, f"{rel}: header says no columns but the statement returns"
        return
    assert m, f"{rel}: header lists columns but there is no RETURN"
    aliases = []
    depth = 0
    cur = ""
    for ch in m.group(1):
        depth += ch in "([{"
        depth -= ch in ")]}"
        if ch == "," and depth == 0:
            aliases.append(cur)
            cur = ""
        else:
            cur += ch
    aliases.append(cur)
    names = []
    for a in aliases:
        a = a.strip()
        mm = re.search(r"\bAS\s+([A-Za-z_][A-Za-z0-9_]*)\s*$", a)
        names.append(mm.group(1) if mm else a)
    assert tuple(names) == cols, f"{rel}: RETURN columns {names} != header {cols}"


@pytest.mark.parametrize("rel,text", ALL, ids=[r for r, _ in ALL])
def test_no_string_formatting_of_values(rel, text):
    body = cypher.strip_comments(text)
    # the only interpolation allowed is the allow-listed {label}
    assert not re.search(r"\{(?!label\})[A-Za-z_]+\}", re.sub(r"\{[a-z_]+:", "", body)) or "{label}" in body
    assert "%s" not in body and "format(" not in body


def test_dialect_override_and_label_allowlist():
    assert cypher.load("create_schema", "neo4j").path == "neo4j/create_schema.cypher"
    assert cypher.load("create_schema", "falkordb").path == "falkordb/create_schema.cypher"
    assert cypher.load("merge_edges", "neo4j").path == "merge_edges.cypher"
    st = cypher.load("merge_concepts")
    assert "SET c:Diagnosis" in st.with_label("Diagnosis")
    with pytest.raises(ValueError, match="allow-list"):
        st.with_label("Diagnosis) DETACH DELETE (n")
    with pytest.raises(FileNotFoundError):
        cypher.load("no_such_statement")


def test_strip_comments_respects_strings():
    assert cypher.strip_comments("RETURN '//x' // gone\n") == "RETURN '//x' \n"
    assert cypher.used_params("// $ghost\nRETURN $real, '$notaparam'") == {"real"}


@pytest.mark.parametrize("rel,text", ALL, ids=[r for r, _ in ALL])
def test_header_mode_matches_what_the_statement_does(rel, text):
    name = rel.rsplit("/", 1)[-1][: -len(".cypher")]
    st = cypher.load(name, rel.split("/")[0] if "/" in rel else "falkordb")
    writes = re.search(r"\b(MERGE|CREATE|DELETE|SET|REMOVE)\b", st.body) is not None
    assert st.mode == ("write" if writes else "read"), f"{rel}: mode {st.mode} but the statement {'writes' if writes else 'only reads'}"


def test_a_file_without_a_mode_is_refused():
    with pytest.raises(ValueError, match="mode"):
        cypher._parse_header("x", "// params: none\n// returns: none\nMATCH (n) RETURN n\n")
