// P(c | V_I) for each target concept under the noisy-OR causal model
// (kgrag/kg/store.py), for the full evidence and for the evidence with one observed
// concept left out (the counterfactuals of kgrag query).  Accepted CAUSES paths of
// 1..$max_len edges from observed concepts; strength = q_o * product of p;
// P = 1 - (1 - leak) (1 - q_c) prod(1 - strength).  The paths are expanded once from
// each observed concept, then folded per scenario and target.  $observed is a list
// of {id, q}; send [{id: '', q: 0.0}] when nothing is observed.  $removals lists one
// observed id per scenario; '' (no concept id is empty) is the full evidence.  One
// row per scenario: probabilities[i] belongs to $targets[i].
// params: $targets, $observed, $removals, $max_len, $default_leak
// returns: removed, probabilities
// mode: read
UNWIND $observed AS ob
OPTIONAL MATCH p = (o:Concept {id: ob.id})-[:CAUSES*1..3]->(c)
WHERE length(p) <= $max_len
  AND all(r IN relationships(p) WHERE r.status = 'accepted')
  AND all(n IN nodes(p) WHERE single(m IN nodes(p) WHERE m = n))
WITH collect(CASE WHEN p IS NULL THEN null
                  ELSE [c.id, ob.q * reduce(s = 1.0, r IN relationships(p) | s * r.p), ob.id] END) AS reached
OPTIONAL MATCH (k:Concept) WHERE k.id IN $targets AND k.leak IS NOT NULL
WITH reached, collect([k.id, k.leak]) AS leaks
UNWIND $removals AS rm
RETURN rm AS removed,
       [t IN $targets | 1.0
        - reduce(l = 1.0 - $default_leak, x IN leaks | CASE WHEN x[0] = t THEN 1.0 - x[1] ELSE l END)
        * reduce(q = 1.0, ob IN $observed | CASE WHEN ob.id = t AND ob.id <> rm THEN q * (1.0 - ob.q) ELSE q END)
        * reduce(acc = 1.0, x IN reached | CASE WHEN x[0] = t AND x[2] <> rm THEN acc * (1.0 - x[1]) ELSE acc END)]
       AS probabilities
