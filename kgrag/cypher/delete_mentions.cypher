// Remove the ASSERTS relationships of these studies (before re-ingesting them).
// params: $ids
// returns: deleted
// mode: write
UNWIND $ids AS sid
MATCH (s:Study {id: sid})-[a:ASSERTS]->(:Concept)
WITH collect(a) AS rels
UNWIND rels AS a
DELETE a
RETURN size(rels) AS deleted
