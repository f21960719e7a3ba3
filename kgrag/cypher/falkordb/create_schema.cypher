// Index on Concept.id (FalkorDB DDL); uniqueness is added with GRAPH.CONSTRAINT.
// params: none
// returns: none
// mode: write
CREATE INDEX FOR (c:Concept) ON (c.id)
