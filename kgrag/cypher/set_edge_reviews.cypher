// Apply a reviewed curation file in one statement, so one transaction: every row or none.
// When any row's edge is missing, nothing is written and applied is 0.  Rows are
// validated and free of duplicate (src, dst) keys before sending; no MERGE is used.
// A row with p set is a reviewer's strength: the edge's source becomes 'human' (a
// rebuild keeps p on a locked human edge); p null leaves p and source as they are.
// params: $rows
// returns: applied
// mode: write
UNWIND $rows AS row
OPTIONAL MATCH (:Concept {id: row.src})-[e:CAUSES]->(:Concept {id: row.dst})
WITH collect({row: row, edge: e}) AS pairs
WITH pairs, all(x IN pairs WHERE x.edge IS NOT NULL) AS complete
UNWIND CASE WHEN complete THEN pairs ELSE [] END AS x
WITH x.row AS row, x.edge AS r
SET r.status = row.status,
    r.reviewed_by = row.reviewed_by,
    r.reviewed_at = row.reviewed_at,
    r.note = row.note,
    r.locked = row.locked,
    r.p = coalesce(row.p, r.p),
    r.source = CASE WHEN row.p IS NULL THEN r.source ELSE 'human' END
RETURN count(r) AS applied
