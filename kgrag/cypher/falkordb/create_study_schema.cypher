// Index on Study.id (FalkorDB DDL); uniqueness is added with GRAPH.CONSTRAINT.
// params: none
// returns: none
// mode: write
CREATE INDEX FOR (s:Study) ON (s.id)
