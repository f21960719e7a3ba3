"""Every phrasing the synthetic corpus writes is read with the assertion it means."""

import re

import pytest

from kgrag.ingest.extract import RuleExtractor, study_level
from kgrag.synth import reports

FILL = {"zone": "right lower lobe", "Zone": "Right lower lobe", "side": "left", "size": "small"}


def _cases():
    for concept, (pos, neg) in reports.PHRASES.items():
        yield from ((concept, t, "present") for t in pos)
        yield from ((concept, t, "absent") for t in neg)
    for concept, ts in reports.HEDGES.items():
        yield from ((concept, t, "uncertain") for t in ts)
    for concept, ts in reports.IMPRESSION.items():
        yield from ((concept, t, "present") for t in ts)


CASES = list(_cases())


@pytest.fixture(scope="module")
def extractor():
    x = RuleExtractor()
    x.warm_up()
    return x


@pytest.mark.parametrize("concept,template,expected", CASES, ids=[f"{c}:{t[:30]}" for c, t, _ in CASES])
def test_synth_phrasing(extractor, concept, template, expected):
    text = re.sub(r"\{(\w+)\}", lambda m: FILL.get(m.group(1), "small"), template)
    got = study_level(extractor.extract("s", text))
    assert got.get(concept) == expected, f"{text!r}: {got}"
