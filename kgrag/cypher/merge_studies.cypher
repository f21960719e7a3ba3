// Upsert Study nodes.
// params: $rows
// returns: written
// mode: write
UNWIND $rows AS row
MERGE (s:Study {id: row.id})
SET s.split = row.split,
    s.modality = row.modality,
    s.content_hash = row.content_hash
RETURN count(s) AS written
