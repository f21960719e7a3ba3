// Accepted causal paths (1..$max_len edges) from observed concepts to targets,
// strongest first; strength = q_o * product of p along the path.
// params: $observed, $targets, $max_len
// returns: target, nodes, strength
// mode: read
UNWIND $observed AS ob
MATCH p = (o:Concept {id: ob.id})-[:CAUSES*1..3]->(c:Concept)
WHERE c.id IN $targets
  AND length(p) <= $max_len
  AND all(r IN relationships(p) WHERE r.status = 'accepted')
  AND all(n IN nodes(p) WHERE single(m IN nodes(p) WHERE m = n))
RETURN c.id AS target, [n IN nodes(p) | n.id] AS nodes,
       ob.q * reduce(s = 1.0, r IN relationships(p) | s * r.p) AS strength
ORDER BY target, strength DESC
