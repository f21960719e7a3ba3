// Every node and relationship of the graph, whatever its label (kgrag db status).
// params: none
// returns: nodes, edges
// mode: read
OPTIONAL MATCH (n)
WITH count(n) AS nodes
OPTIONAL MATCH ()-[r]->()
RETURN nodes, count(r) AS edges
