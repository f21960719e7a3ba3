// Ids of every Study node.
// params: none
// returns: id
MATCH (s:Study)
RETURN s.id AS id
