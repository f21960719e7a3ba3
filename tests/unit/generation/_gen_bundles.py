"""A small evidence bundle written by hand: three evidence studies that disagree on
pleural effusion and cardiomegaly, V_I, posteriors with paths and counterfactuals."""

from __future__ import annotations

from dataclasses import replace

from kgrag.generation.evidence import (
    ConceptProbability,
    Counterfactual,
    Definition,
    EvidenceBundle,
    EvidenceItem,
    EvidenceSentence,
    Mentioned,
    ParsedQuestion,
    Path,
    Posterior,
    QueryInfo,
)
from kgrag.ontology import concepts


def S(text, section, *mentions):
    return EvidenceSentence(text, section, tuple(Mentioned(c, a) for c, a in mentions))


def item(sid, rank, fused, *sentences, loglik=-1.0):
    return EvidenceItem(sid, rank, fused, {"image_text": fused - 0.1, "image_image": fused, "text_text": None, "fused": fused},
                        loglik, None, None, tuple(sentences))


EVIDENCE = (
    item("s1", 1, 0.90,
         S("Focal consolidation in the right lower lobe.", "findings", ("consolidation", "present")),
         S("Small right pleural effusion.", "findings", ("pleural_effusion", "present")),
         S("No pneumothorax.", "findings", ("pneumothorax", "absent")),
         S("Findings consistent with pneumonia.", "impression", ("pneumonia", "present"))),
    item("s2", 2, 0.70,
         S("There is no pleural effusion.", "findings", ("pleural_effusion", "absent")),
         S("The heart is enlarged.", "findings", ("cardiomegaly", "present")),
         S("No pleural effusion or pneumothorax.", "findings", ("pleural_effusion", "absent"), ("pneumothorax", "absent")),
         S("Possible pneumonia.", "impression", ("pneumonia", "uncertain"))),
    item("s3", 3, 0.50,
         S("Bilateral pleural effusions.", "findings", ("pleural_effusion", "present")),
         S("Heart size is normal.", "findings", ("cardiomegaly", "absent")),
         S("PORTABLE AP VIEW.", "findings"),
         S("No acute process.", "impression", ("no_finding", "present"))),
)

V_I = {"lung_opacity": 0.9, "pleural_effusion": 0.8, "pneumothorax": 0.05, "cardiomegaly": 0.3}

POSTERIORS = {
    "lung_opacity": Posterior("lung_opacity", 0.9),
    "pleural_effusion": Posterior("pleural_effusion", 0.8),
    "pneumothorax": Posterior("pneumothorax", 0.05),
    "cardiomegaly": Posterior("cardiomegaly", 0.3),
    "consolidation": Posterior("consolidation", 0.72, (Path(("lung_opacity", "consolidation"), 0.72),),
                               (Counterfactual({"lung_opacity": 0}, 0.01),)),
    "pneumonia": Posterior("pneumonia", 0.62, (Path(("lung_opacity", "consolidation", "pneumonia"), 0.36),),
                           (Counterfactual({"lung_opacity": 0}, 0.01), Counterfactual({"consolidation": 0}, 0.05))),
    "heart_failure": Posterior("heart_failure", 0.08, (Path(("cardiomegaly", "heart_failure"), 0.06),)),
    "copd": Posterior("copd", 0.95),  # no path, not in V_I, not in the evidence: nothing supports it
    "edema": Posterior("edema", 0.02),
}


def bundle(question=None, *, posteriors=None, v_i=None, evidence=EVIDENCE) -> EvidenceBundle:
    cs = concepts()
    v = V_I if v_i is None else v_i
    return EvidenceBundle(
        query=QueryInfo("q1", question.text if question else None, None, ("img.png",), "radiology"),
        image_findings=tuple(ConceptProbability(c, p) for c, p in v.items()),
        observed={c: p for c, p in v.items() if p >= 0.1},
        evidence=evidence,
        posteriors=POSTERIORS if posteriors is None else posteriors,
        definitions=(Definition("consolidation", "Consolidation", cs["consolidation"].definition),),
        graph_version="g-test", index_version="i-test",
        names={c.id: c.name for c in cs.values()}, roles={c.id: c.role for c in cs.values()},
        question=question,
    )


def closed(concept, polarity="present", text=None):
    return ParsedQuestion(text or f"Is there {concept}?", "closed", (concept,), polarity)


def with_posterior(b: EvidenceBundle, concept: str, p: float) -> EvidenceBundle:
    ps = dict(b.posteriors)
    ps[concept] = replace(ps[concept], probability=p)
    return replace(b, posteriors=ps)
