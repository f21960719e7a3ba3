// Upsert one study-level ASSERTS relationship per (study, concept).
// Both nodes must exist; rows are de-duplicated by (study_id, concept) before sending.
// params: $rows
// returns: written
// mode: write
UNWIND $rows AS row
MATCH (s:Study {id: row.study_id})
MATCH (c:Concept {id: row.concept})
MERGE (s)-[a:ASSERTS]->(c)
SET a.assertion = row.assertion,
    a.count = row.count,
    a.section = row.section,
    a.sentence = row.sentence
RETURN count(a) AS written
