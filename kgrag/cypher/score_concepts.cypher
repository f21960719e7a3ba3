// P(c | V_I) for each target concept under the noisy-OR causal model
// (kgrag/kg/store.py): accepted CAUSES paths of 1..$max_len edges from observed
// concepts; strength = q_o * product of p; P = 1 - (1 - leak) (1 - q_c) prod(1 - strength).
// The paths are expanded once from each observed concept (not once per target),
// then folded per target.  $observed is a list of {id, q}; send [{id: '', q: 0.0}]
// when nothing is observed.
// params: $targets, $observed, $max_len, $default_leak
// returns: concept, known, probability
UNWIND $observed AS ob
OPTIONAL MATCH p = (o:Concept {id: ob.id})-[:CAUSES*1..3]->(c)
WHERE length(p) <= $max_len
  AND all(r IN relationships(p) WHERE r.status = 'accepted')
  AND all(n IN nodes(p) WHERE single(m IN nodes(p) WHERE m = n))
WITH collect(CASE WHEN p IS NULL THEN null
                  ELSE [c.id, ob.q * reduce(s = 1.0, r IN relationships(p) | s * r.p)] END) AS reached
UNWIND $targets AS t
OPTIONAL MATCH (c:Concept {id: t})
RETURN t AS concept, c IS NOT NULL AS known,
       1.0 - (1.0 - coalesce(c.leak, $default_leak))
           * reduce(q = 1.0, ob IN $observed | CASE WHEN ob.id = t THEN q * (1.0 - ob.q) ELSE q END)
           * reduce(acc = 1.0, x IN reached | CASE WHEN x[0] = t THEN acc * (1.0 - x[1]) ELSE acc END) AS probability
