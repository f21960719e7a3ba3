// Ids of every Study node.
// params: none
// returns: id
// mode: read
MATCH (s:Study)
RETURN s.id AS id
