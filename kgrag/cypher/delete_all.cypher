// Delete every node and relationship of the graph.
// params: none
// returns: none
MATCH (n)
DETACH DELETE n
