// MCRAG's factorized likelihood log pG(V_D, V_F | V_I) of every candidate report,
// one hop, all candidates in one statement (kgrag/causal/likelihood.py is the
// reference; the model is in kgrag/graph/store.py).  One term per claim (a concept
// the report asserts present or absent):
//   claimed concept in V_I:  P = q from $observed                 (p(V_F | V_I))
//   otherwise:               P = 1 - (1 - leak) * prod over accepted parents u of
//                                (1 - p_u * s_u)                    (p(V_D | V_F))
//   s_u = 1 if the report asserts u present, 0 if it denies u, else q_u from
//   $observed, else the prior marginal from $priors, else u's leak.
// term = log(max(P, $log_eps)) for a present claim, log(max(1 - P, $log_eps)) for an
// absent one; loglik = the sum of the terms, or their mean when $normalize = 'mean'.
// $concepts lists the distinct claimed concepts; $claims[k] lists the claims of
// $concepts[k] as [candidate index, present?]; $present[i] / $absent[i] are what
// candidate i asserts / denies; $observed and $priors map concept id -> probability.
// Each concept's parents are read once, then every claim of it is scored.  One row
// per candidate with a claim, by index; concepts[j] and probabilities[j] are the
// j-th claim's index into $concepts and its P.
// params: $concepts, $claims, $present, $absent, $observed, $priors, $default_leak, $log_eps, $normalize
// returns: candidate, loglik, n, concepts, probabilities
// mode: read
UNWIND range(0, size($concepts) - 1) AS k
OPTIONAL MATCH (v:Concept {id: $concepts[k]})
OPTIONAL MATCH (v)<-[r:CAUSES]-(u:Concept)
WITH k, $observed[$concepts[k]] AS own, 1.0 - coalesce(v.leak, $default_leak) AS noleak,
     collect(CASE WHEN r.status = 'accepted'
                  THEN [u.id, 1.0 - r.p,
                        1.0 - r.p * coalesce($observed[u.id], $priors[u.id], u.leak, $default_leak)] END) AS pa
UNWIND $claims[k] AS cl
WITH cl[0] AS i, k, cl[1] AS present,
     CASE WHEN own IS NOT NULL THEN own
          ELSE 1.0 - noleak * reduce(acc = 1.0, x IN pa |
                 acc * CASE WHEN x[0] IN $present[cl[0]] THEN x[1]
                            WHEN x[0] IN $absent[cl[0]] THEN 1.0
                            ELSE x[2] END) END AS prob
WITH i, collect(k) AS concepts, collect(prob) AS probabilities, count(*) AS n,
     sum(log(CASE WHEN present THEN CASE WHEN prob > $log_eps THEN prob ELSE $log_eps END
                  ELSE CASE WHEN 1.0 - prob > $log_eps THEN 1.0 - prob ELSE $log_eps END END)) AS total
RETURN i AS candidate, CASE WHEN $normalize = 'mean' THEN total / n ELSE total END AS loglik, n,
       concepts, probabilities
ORDER BY candidate
