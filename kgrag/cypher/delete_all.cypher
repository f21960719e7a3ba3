// Delete kgrag's nodes (Concept, Study, KgragMeta) and their relationships.
// params: none
// returns: none
// mode: write
MATCH (n)
WHERE n:Concept OR n:Study OR n:KgragMeta
DETACH DELETE n
