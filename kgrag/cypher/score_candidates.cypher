// Causal log-likelihood of many candidate reports in one query.  The candidates'
// assertions come as parallel lists (compact to send): item j belongs to candidate
// $cand_ids[$item_cand[j]], names concept $targets[$item_ti[j]] (the union of their
// concepts) and is present when $item_present[j] = 1, absent when 0.  Concept
// probabilities follow score_concepts.cypher; each item contributes log(max(P, eps))
// if present, log(max(1 - P, eps)) if absent; the report's score is the mean over
// its items.  probs[i] is P($targets[i] | V_I).
// params: $targets, $observed, $max_len, $default_leak, $cand_ids, $item_cand, $item_ti, $item_present, $eps
// returns: id, n, loglik, probs
UNWIND range(0, size($targets) - 1) AS ti
WITH ti, $targets[ti] AS t
OPTIONAL MATCH (c:Concept {id: t})
WITH ti, t, c
UNWIND $observed AS ob
OPTIONAL MATCH p = (o:Concept {id: ob.id})-[:CAUSES*1..3]->(c)
WHERE length(p) <= $max_len
  AND all(r IN relationships(p) WHERE r.status = 'accepted')
  AND all(n IN nodes(p) WHERE single(m IN nodes(p) WHERE m = n))
WITH ti, t, c, ob, p
WITH ti, t, c,
     collect(CASE WHEN p IS NULL THEN null
                  ELSE ob.q * reduce(s = 1.0, r IN relationships(p) | s * r.p) END) AS strengths,
     max(CASE WHEN ob.id = t THEN ob.q ELSE 0.0 END) AS q_self
WITH ti, 1.0 - (1.0 - coalesce(c.leak, $default_leak)) * (1.0 - q_self)
             * reduce(acc = 1.0, s IN strengths | acc * (1.0 - s)) AS prob
ORDER BY ti
WITH collect(prob) AS probs
UNWIND range(0, size($item_ti) - 1) AS j
WITH probs, $item_cand[j] AS ci, probs[$item_ti[j]] AS prob, $item_present[j] AS present
WITH probs, ci,
     CASE WHEN present = 1
          THEN log(CASE WHEN prob < $eps THEN $eps ELSE prob END)
          ELSE log(CASE WHEN 1.0 - prob < $eps THEN $eps ELSE 1.0 - prob END) END AS ll
WITH ci, avg(ll) AS loglik, count(ll) AS n, probs
RETURN $cand_ids[ci] AS id, n, loglik, probs
