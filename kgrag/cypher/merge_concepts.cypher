// Upsert concepts of one role; the role label comes from the allow-list.
// params: $rows
// returns: written
// mode: write
UNWIND $rows AS row
MERGE (c:Concept {id: row.id})
SET c:{label},
    c.role = row.role,
    c.name = row.name,
    c.synonyms = row.synonyms,
    c.definition = row.definition,
    c.leak = coalesce(row.leak, c.leak)
RETURN count(c) AS written
