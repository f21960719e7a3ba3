// Every concept.
// params: none
// returns: id, role, name, synonyms, definition, leak
// mode: read
MATCH (c:Concept)
RETURN c.id AS id, c.role AS role, c.name AS name, c.synonyms AS synonyms,
       c.definition AS definition, c.leak AS leak
ORDER BY id
