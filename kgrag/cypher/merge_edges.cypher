// Upsert CAUSES edges (step two of the two-step upsert: both concepts already exist).
// Rows are de-duplicated by (src, dst) before sending.  A locked edge keeps its
// human decision (status, source, review fields, lock) unless $overwrite_locked;
// its statistics and provenance are refreshed, and its p too unless a reviewer set
// it (source 'human', see set_edge_reviews).
// params: $rows, $overwrite_locked
// returns: src, dst, kept_locked
// mode: write
UNWIND $rows AS row
MATCH (a:Concept {id: row.src})
MATCH (b:Concept {id: row.dst})
MERGE (a)-[r:CAUSES]->(b)
WITH a, b, r, row, (coalesce(r.locked, false) AND NOT $overwrite_locked) AS keep
SET r.p = CASE WHEN keep AND r.source = 'human' THEN r.p ELSE row.p END,
    r.support = row.support,
    r.n_c = row.n_c,
    r.n_e_given_c = row.n_e_given_c,
    r.n_not_c = row.n_not_c,
    r.n_e_given_not_c = row.n_e_given_not_c,
    r.p_e_given_c = row.p_e_given_c,
    r.p_e_given_not_c = row.p_e_given_not_c,
    r.lift = row.lift,
    r.ci_low = row.ci_low,
    r.ci_high = row.ci_high,
    r.p_value = row.p_value,
    r.extractor = row.extractor,
    r.extractor_version = row.extractor_version,
    r.evidence_studies = row.evidence_studies,
    r.evidence_spans = row.evidence_spans,
    r.evidence_count = row.evidence_count,
    r.rationale = row.rationale,
    r.status = CASE WHEN keep THEN r.status ELSE row.status END,
    r.source = CASE WHEN keep THEN r.source ELSE row.source END,
    r.reviewed_by = CASE WHEN keep THEN r.reviewed_by ELSE row.reviewed_by END,
    r.reviewed_at = CASE WHEN keep THEN r.reviewed_at ELSE row.reviewed_at END,
    r.note = CASE WHEN keep THEN r.note ELSE row.note END,
    r.locked = CASE WHEN keep THEN r.locked ELSE row.locked END
RETURN a.id AS src, b.id AS dst, keep AS kept_locked
