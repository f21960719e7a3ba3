// Uniqueness constraints of the graph (FalkorDB procedure), so ensure_schema sends
// GRAPH.CONSTRAINT only for a missing one: a refused duplicate would be logged into the AOF.
// params: none
// returns: type, label, properties, status
// mode: read
CALL db.constraints() YIELD type, label, properties, status
RETURN type, label, properties, status
