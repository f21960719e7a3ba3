// Causal log-likelihood of many candidate reports in one query.  Each candidate is
// {id, items: [{concept, assertion}]} with assertion 'present' or 'absent'; $targets
// is the union of their concepts.  Concept probabilities follow score_concepts.cypher;
// each item contributes log(max(P, eps)) if present, log(max(1 - P, eps)) if absent;
// the report's score is the mean over its items.
// params: $targets, $observed, $max_len, $default_leak, $candidates, $eps
// returns: id, n, loglik, items
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
WITH t, 1.0 - (1.0 - coalesce(c.leak, $default_leak)) * (1.0 - q_self)
             * reduce(acc = 1.0, s IN strengths | acc * (1.0 - s)) AS prob
WITH collect({concept: t, probability: prob}) AS probs
UNWIND $candidates AS cand
UNWIND cand.items AS it
WITH cand, it, [x IN probs WHERE x.concept = it.concept][0].probability AS prob
WITH cand, it, prob,
     CASE WHEN it.assertion = 'present'
          THEN log(CASE WHEN prob < $eps THEN $eps ELSE prob END)
          ELSE log(CASE WHEN 1.0 - prob < $eps THEN $eps ELSE 1.0 - prob END) END AS ll
WITH cand, collect({concept: it.concept, assertion: it.assertion, probability: prob}) AS items,
     avg(ll) AS loglik, count(it) AS n
RETURN cand.id AS id, n, loglik, items
