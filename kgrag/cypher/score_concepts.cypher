// P(c | V_I) for each target concept under the noisy-OR causal model
// (kgrag/kg/store.py): accepted CAUSES paths of 1..$max_len edges from observed
// concepts; strength = q_o * product of p; P = 1 - (1 - leak) (1 - q_c) prod(1 - strength).
// $observed is a list of {id, q}; send [{id: '', q: 0.0}] when nothing is observed.
// params: $targets, $observed, $max_len, $default_leak
// returns: concept, known, probability
UNWIND $targets AS t
OPTIONAL MATCH (c:Concept {id: t})
WITH t, c
UNWIND $observed AS ob
OPTIONAL MATCH p = (o:Concept {id: ob.id})-[:CAUSES*1..3]->(c)
WHERE length(p) <= $max_len
  AND all(r IN relationships(p) WHERE r.status = 'accepted')
  AND all(n IN nodes(p) WHERE single(m IN nodes(p) WHERE m = n))
WITH t, c, ob, p
WITH t, c,
     collect(CASE WHEN p IS NULL THEN null
                  ELSE ob.q * reduce(s = 1.0, r IN relationships(p) | s * r.p) END) AS strengths,
     max(CASE WHEN ob.id = t THEN ob.q ELSE 0.0 END) AS q_self
WITH t, c, q_self, reduce(acc = 1.0, s IN strengths | acc * (1.0 - s)) AS none_fires
RETURN t AS concept, c IS NOT NULL AS known,
       1.0 - (1.0 - coalesce(c.leak, $default_leak)) * (1.0 - q_self) * none_fires AS probability
