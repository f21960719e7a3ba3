// Delete kgrag's nodes (Concept, Study, KgragMeta) and their relationships, 1,000
// nodes per transaction, so a large graph needs no single huge transaction; other
// labels in the database are left alone.  Runs in an auto-commit transaction.
// params: none
// returns: none
// mode: write
MATCH (n)
WHERE n:Concept OR n:Study OR n:KgragMeta
CALL (n) {
  DETACH DELETE n
} IN TRANSACTIONS OF 1000 ROWS
