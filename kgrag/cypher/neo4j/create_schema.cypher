// Uniqueness of Concept.id (Neo4j DDL; one statement per file).
// params: none
// returns: none
// mode: write
CREATE CONSTRAINT kgrag_concept_id IF NOT EXISTS FOR (c:Concept) REQUIRE c.id IS UNIQUE
