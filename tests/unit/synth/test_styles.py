"""Synth styles a and b, the out-of-distribution test split (--shift) and the info file."""

import hashlib
import json
import os
import re
import subprocess
import sys

import numpy as np
import pytest

from kgrag.synth import model, phantom, phantom_b, reports, reports_b
from kgrag.synth.generate import generate, make_study

# Style a for (n=60, seed=3): the manifest without its "style" key, and the PNGs in name
# order, exactly as the generator wrote them before style b existed (with concepts drawn
# in the fixed topological order).  A change here changes every style a corpus.
STYLE_A_MANIFEST_SHA = "2abde2bf904cf7bf1d9c78195efcf42a588c31932126cce6ac21119c4f0672e8"
STYLE_A_IMAGES_SHA = "d1ce50e887fb2b58c28cb4323282ecff6a2fa3fc36b8bc4a4456f09dd10cf34a"
BASE = {k: 0 for k in [*model.LEAKS, *model.PRIORS]}


def _rows(path):
    return [json.loads(x) for x in (path / "manifest.jsonl").read_text().splitlines()]


def _images_sha(path):
    h = hashlib.sha256()
    for p in sorted((path / "img").glob("*.png")):
        h.update(p.read_bytes())
    return h.hexdigest()


def test_style_a_output_is_unchanged(tmp_path):
    generate(tmp_path, 60, seed=3, progress=False)
    rows = _rows(tmp_path)
    assert {r["style"] for r in rows} == {"a"}
    old = "".join(json.dumps({k: v for k, v in r.items() if k != "style"}, sort_keys=True) + "\n" for r in rows)
    assert hashlib.sha256(old.encode()).hexdigest() == STYLE_A_MANIFEST_SHA
    assert _images_sha(tmp_path) == STYLE_A_IMAGES_SHA


@pytest.mark.parametrize("style", ["a", "b"])
def test_same_seed_same_corpus_in_another_process(tmp_path, style):
    """The corpus must not depend on the interpreter's string-hash seed."""
    here = generate(tmp_path / "here", 25, seed=9, style=style, shift=True, progress=False)
    code = ("import sys; from kgrag.synth.generate import generate; "
            f"print(generate(sys.argv[1], 25, seed=9, style={style!r}, shift=True, progress=False).manifest_sha256)")
    env = {**os.environ, "PYTHONHASHSEED": "12345"}
    out = subprocess.run([sys.executable, "-c", code, str(tmp_path / "there")], env=env, capture_output=True, text=True,
                         check=True).stdout.split()[-1]
    assert out == here.manifest_sha256
    assert _images_sha(tmp_path / "here") == _images_sha(tmp_path / "there")


def test_style_b_deterministic_prefix_stable_and_seeded(tmp_path):
    a = generate(tmp_path / "a", 30, seed=3, style="b", progress=False)
    b = generate(tmp_path / "b", 30, seed=3, style="b", progress=False)
    c = generate(tmp_path / "c", 30, seed=4, style="b", progress=False)
    assert a.manifest_sha256 == b.manifest_sha256 != c.manifest_sha256
    assert _images_sha(tmp_path / "a") == _images_sha(tmp_path / "b")
    generate(tmp_path / "d", 40, seed=3, style="b", progress=False)
    assert (tmp_path / "d/manifest.jsonl").read_text().splitlines()[:30] == (tmp_path / "a/manifest.jsonl").read_text().splitlines()
    # the causal model is shared: style b draws the same labels, splits and sites as style a
    ra, rb = _rows(tmp_path / "a"), [make_study(3, i, False, with_image=False)[0] for i in range(30)]
    assert [(r["labels"], r["split"], r["site"]) for r in ra] == [(r["labels"], r["split"], r["site"]) for r in rb]


def _words(ts):
    return {w for t in ts for w in re.findall(r"[a-z]+", re.sub(r"\{\w+\}", "", t.lower()))}


def _trigrams(ts):
    out = set()
    for t in ts:
        w = re.findall(r"[a-z]+|\{\w+\}", t.lower())
        out |= {tuple(w[i:i + 3]) for i in range(len(w) - 2)}
    return out


def test_report_templates_share_little_vocabulary():
    ta, tb = reports.template_sentences(), reports_b.template_sentences()
    assert len(tb) >= len(ta)
    assert not set(ta) & set(tb)  # no sentence template in common
    ga, gb = _trigrams(ta), _trigrams(tb)
    assert len(ga & gb) / len(ga | gb) < 0.10  # measured 0.043
    wa, wb = _words(ta), _words(tb)
    # shared words are concept names and function words; more than a third of b's are its own
    assert len(wb - wa) / len(wb) > 0.5
    assert len(wa & wb) / len(wa | wb) < 0.40  # measured 0.33


def test_written_reports_differ_between_styles():
    def sentences(style):
        out = set()
        for i in range(300):
            r = make_study(21, i, False, with_image=False, style=style)[0]
            text = " ".join([r["findings"], r["impression"]])
            text = re.sub(r"(?m)^[A-Za-z ]+: ", "", text)  # organ-system headings
            out |= {s.strip() for s in re.split(r"(?<=\.)\s+|\n|\d\. ", text) if s.strip()}
        return out

    sa, sb = sentences("a"), sentences("b")
    assert len(sa & sb) / len(sb) < 0.05
    rb = make_study(21, 0, False, with_image=False, style="b")[0]
    assert rb["indication"] and rb["comparison"] and "findings" in rb and "impression" in rb


@pytest.mark.parametrize("style", ["a", "b"])
def test_reports_state_only_what_is_true(style):
    seen = set()
    for i in range(400):
        r = make_study(8, i, False, with_image=False, style=style, with_stated=True)[0]
        for c, a in r["stated"].items():
            seen.add(a)
            assert (a == "absent") == (r["labels"][c] == 0), (r["id"], c, a, r["findings"], r["impression"])
    assert seen == {"present", "absent", "uncertain"}


def _draw_b(state, seed, site="A", location="rll", side="right", bilateral=False):
    return phantom_b.draw({**BASE, **state}, site, reports_b.StudyLayout(location, side, bilateral), np.random.default_rng(seed))


def test_image_statistics_differ_between_styles():
    a = [phantom.draw(BASE, "A", np.random.default_rng(i), "right lower lobe") for i in range(20)]
    b = [_draw_b({}, i) for i in range(20)]
    assert b[0].shape == a[0].shape == (128, 128) and b[0].dtype == np.float32
    assert 0.0 <= b[0].min() and b[0].max() <= 1.0

    def edges(im):
        return float(np.abs(np.diff(im, axis=1)).mean())

    # brighter and smoother: the two ranges do not overlap
    assert max(x.mean() for x in a) < min(x.mean() for x in b)
    assert max(edges(x) for x in b) < min(edges(x) for x in a)
    assert np.abs(np.mean(a, axis=0) - np.mean(b, axis=0)).mean() > 0.1


def test_style_b_images_carry_the_signs():
    """Common random numbers: the same seed with one finding more is the same film plus its sign."""
    assert set(phantom_b.DRAWN) == set(phantom.DRAWN) <= set(model.LEAKS)
    assert np.array_equal(_draw_b({}, 5), _draw_b({}, 5))
    # where each sign must appear: (rows, columns) holding the centroid of the changed pixels;
    # the layout puts focal findings in the right upper lobe and pleural findings on the right,
    # the patient's right being the image's left
    where = {"lung_opacity": ((20, 50), (20, 60)), "enlarged_cardiomediastinum": ((55, 85), (50, 85)),
             "costophrenic_blunting": ((65, 95), (10, 50)), "pleural_line": ((15, 45), (10, 50)),
             "interstitial_markings": ((40, 80), (30, 98)), "hyperinflation": ((30, 90), (40, 88)),
             "nodule": ((20, 50), (15, 60)), "mass": ((20, 55), (15, 60)), "support_devices": ((0, 60), (20, 118))}
    assert set(where) == set(phantom_b.DRAWN)
    for c, ((y0, y1), (x0, x1)) in where.items():
        for seed in range(4):
            diff = _draw_b({c: 1}, seed, location="rul", side="right") - _draw_b({}, seed, location="rul", side="right")
            changed = np.abs(diff) > 0.05
            assert np.abs(diff).max() > 0.12 and changed.mean() > 0.001, (c, seed)
            ys, xs = np.nonzero(changed)
            assert y0 <= ys.mean() <= y1 and x0 <= xs.mean() <= x1, (c, seed, ys.mean(), xs.mean())
    # a brighter heart band, more dark lung with hyperinflation, denser fluid and opacity
    assert (_draw_b({"enlarged_cardiomediastinum": 1}, 1)[60:76] > 0.75).sum() > 1.3 * (_draw_b({}, 1)[60:76] > 0.75).sum()
    assert (_draw_b({"hyperinflation": 1}, 1) < 0.3).sum() > 1.1 * (_draw_b({}, 1) < 0.3).sum()
    # focal findings follow the report's location: left lower lobe = image right, lower half
    for c in ("lung_opacity", "nodule", "mass"):
        diff = _draw_b({c: 1}, 2, location="lll") - _draw_b({}, 2, location="lll")
        ys, xs = np.nonzero(np.abs(diff) > 0.05)
        assert ys.mean() > 55 and xs.mean() > 64, c
    # the site's label box, bottom left, on site B only
    assert _draw_b({}, 0, site="B")[116:124, 4:26].max() > 0.95 and _draw_b({}, 0)[116:124, 4:26].max() < 0.9


def test_shift_puts_test_in_the_other_style_with_shifted_prevalence():
    plain = [make_study(13, i, False, with_image=False, style="a")[0] for i in range(3000)]
    shifted = [make_study(13, i, True, with_image=False, style="a")[0] for i in range(3000)]
    for p, s in zip(plain, shifted, strict=True):
        assert p["split"] == s["split"]
        if s["split"] == "test":
            assert s["style"] == "b" and "indication" in s
        else:  # train and val are the in-distribution corpus, row for row
            assert s == p and s["style"] == "a"

    def prev(rows, d, split):
        return np.mean([r["labels"][d] for r in rows if r["split"] == split])

    for d in ("pneumonia", "heart_failure"):
        assert prev(shifted, d, "test") > prev(plain, d, "test") + 0.07  # 0.15 -> 0.30, 0.12 -> 0.25
    assert prev(shifted, "copd", "test") < prev(plain, "copd", "test") - 0.025  # 0.10 -> 0.05

    def corr(rows, split):
        sel = [r for r in rows if r["split"] == split]
        return np.mean([r["site"] == "B" for r in sel if r["labels"]["heart_failure"]]) - \
            np.mean([r["site"] == "B" for r in sel if not r["labels"]["heart_failure"]])

    assert corr(shifted, "val") > 0.4 and corr(shifted, "test") < -0.4
    b_shift = [make_study(13, i, True, with_image=False, style="b")[0] for i in range(200)]
    assert {(r["split"] == "test", r["style"]) for r in b_shift} == {(False, "b"), (True, "a")}


def test_info_file_records_seed_style_and_shift(tmp_path):
    s = generate(tmp_path, 80, seed=6, style="b", shift=True, progress=False)
    info = json.loads((tmp_path / "manifest.info.json").read_text())
    assert info["seed"] == 6 and info["style"] == "b" and info["n"] == 80
    assert info["manifest_sha256"] == s.manifest_sha256
    sh = info["shift"]
    assert sh["enabled"] is True and sh["style"] == {"train": "b", "val": "b", "test": "a"}
    assert sh["diagnosis_priors"]["test"] == {d: model.SHIFTED_PRIORS[d] for d in model.PRIORS}
    assert sh["diagnosis_priors"]["val"] == {d: model.PRIORS[d] for d in model.PRIORS}
    assert sh["p_site_b_given_heart_failure"] == {"train": 0.8, "val": 0.8, "test": 0.2}
    rows = _rows(tmp_path)
    assert info["styles_by_split"]["test"] == {"a": sum(r["split"] == "test" for r in rows)}
    assert all(r["labels"] and r["questions"] and r["style"] in ("a", "b") for r in rows)
    truth = json.loads((tmp_path / "truth.json").read_text())
    assert truth["seed"] == 6 and truth["style"] == "b" and set(truth["styles"]) == {"a", "b"}


def test_manifests_validate_with_the_ingest_reader(tmp_path):
    from kgrag.imaging import load_image
    from kgrag.ingest.pipeline import validate
    from kgrag.ingest.readers import read

    generate(tmp_path, 40, seed=2, style="a", shift=True, progress=False)
    studies = [validate(rec, 20_000) for rec in read(tmp_path / "manifest.jsonl")]
    assert len(studies) == 40 and len({s["id"] for s in studies}) == 40
    for st, row in zip(studies, _rows(tmp_path), strict=True):
        assert st["report"].count("FINDINGS:") == 1 and "IMPRESSION:" in st["report"]
        assert os.path.isfile(st["image_paths"][0]) and st["labels"] == row["labels"]
        if row["style"] == "b":
            assert st["report"].startswith("INDICATION:") and "COMPARISON:" in st["report"]
        assert st["meta"]["site"] == row["site"]
        # each study is drawn by its style's renderer: style b burns an "L" marker top right
        img = load_image(st["image_paths"][0])
        assert (img[12:14, 108:122].max() > 0.95) == (row["style"] == "b")


def test_cli_style_and_shift(tmp_path):
    from click.testing import CliRunner

    from kgrag.commands.synth import synth

    r = CliRunner().invoke(synth, ["--help"])
    assert r.exit_code == 0 and "--style [a|b]" in r.output and "--shift" in r.output
    r = CliRunner().invoke(synth, [str(tmp_path), "--n", "30", "--seed", "4", "--style", "b", "--shift", "--json"])
    assert r.exit_code == 0, r.output
    out = json.loads(r.stdout.strip().splitlines()[-1])
    assert out["style"] == "b" and out["shift"] is True and set(out["styles"]["test"]) == {"a"}
    r = CliRunner().invoke(synth, [str(tmp_path / "x"), "--style", "c"])
    assert r.exit_code != 0
    with pytest.raises(Exception, match="--style"):
        generate(tmp_path / "y", 5, style="c", progress=False)

