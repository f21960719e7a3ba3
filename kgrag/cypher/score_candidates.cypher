// Causal log-likelihood of many candidate reports in one query.
// Concept probabilities follow score_concepts.cypher: paths are expanded once from
// each observed concept, then probs[i] = P($targets[i] | V_I) for the union of the
// candidates' concepts.  The candidates' assertions come compactly: candidate i owns
// items $item_start[i] .. $item_start[i + 1] - 1 (so size($item_start) is the number
// of candidates + 1); item code $items[j] = 2 * (index into $targets) + 1 when the
// concept is asserted present, + 0 when absent.  An item contributes
// log(max(P, eps)) if present, log(max(1 - P, eps)) if absent; a report's score is
// the mean over its items (candidates without items are not sent).
// params: $targets, $observed, $max_len, $default_leak, $items, $item_start, $eps
// returns: probs, loglik
UNWIND $observed AS ob
OPTIONAL MATCH p = (o:Concept {id: ob.id})-[:CAUSES*1..3]->(c)
WHERE length(p) <= $max_len
  AND all(r IN relationships(p) WHERE r.status = 'accepted')
  AND all(n IN nodes(p) WHERE single(m IN nodes(p) WHERE m = n))
WITH collect(CASE WHEN p IS NULL THEN null
                  ELSE [c.id, ob.q * reduce(s = 1.0, r IN relationships(p) | s * r.p)] END) AS reached
OPTIONAL MATCH (k:Concept) WHERE k.id IN $targets AND k.leak IS NOT NULL
WITH reached, collect([k.id, k.leak]) AS leaks
WITH [t IN $targets | 1.0
       - reduce(l = 1.0 - $default_leak, x IN leaks | CASE WHEN x[0] = t THEN 1.0 - x[1] ELSE l END)
       * reduce(q = 1.0, ob IN $observed | CASE WHEN ob.id = t THEN q * (1.0 - ob.q) ELSE q END)
       * reduce(acc = 1.0, x IN reached | CASE WHEN x[0] = t THEN acc * (1.0 - x[1]) ELSE acc END)] AS probs
WITH probs, reduce(acc = [], pr IN probs |
     acc + [log(CASE WHEN 1.0 - pr < $eps THEN $eps ELSE 1.0 - pr END),
            log(CASE WHEN pr < $eps THEN $eps ELSE pr END)]) AS ll
RETURN probs,
       [i IN range(0, size($item_start) - 2) |
        reduce(s = 0.0, j IN range($item_start[i], $item_start[i + 1] - 1) | s + ll[$items[j]])
        / (1.0 * ($item_start[i + 1] - $item_start[i]))] AS loglik
