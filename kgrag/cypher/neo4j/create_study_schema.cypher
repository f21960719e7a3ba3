// Uniqueness of Study.id (Neo4j DDL).
// params: none
// returns: none
// mode: write
CREATE CONSTRAINT kgrag_study_id IF NOT EXISTS FOR (s:Study) REQUIRE s.id IS UNIQUE
