// Record a curation decision on one edge.
// params: $src, $dst, $status, $reviewed_by, $reviewed_at, $note, $locked
// returns: src, dst, status, reviewed_by, reviewed_at, note, locked
// mode: write
MATCH (a:Concept {id: $src})-[r:CAUSES]->(b:Concept {id: $dst})
SET r.status = $status,
    r.reviewed_by = $reviewed_by,
    r.reviewed_at = $reviewed_at,
    r.note = $note,
    r.locked = $locked
RETURN a.id AS src, b.id AS dst, r.status AS status, r.reviewed_by AS reviewed_by,
       r.reviewed_at AS reviewed_at, r.note AS note, r.locked AS locked
