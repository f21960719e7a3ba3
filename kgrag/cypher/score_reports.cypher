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
//
// Parameters: $present[i] / $absent[i] are what candidate i asserts / denies;
// $observed and $priors map concept id -> probability; $concepts lists the distinct
// claimed concepts that are NOT in V_I, and $cpd[i] candidate i's claims of them,
// each coded k (present) or -(k + 1) (absent) for $concepts[k].  Each such concept's
// leak and accepted parents are read once (fam[k], ordered by k), then every
// candidate's claims are scored inside list expressions: one row per candidate, no
// row per claim.  probabilities[j] is the P of the claim $cpd[i][j] (a V_I claim's P
// is its q).
// params: $concepts, $cpd, $present, $absent, $observed, $priors, $default_leak, $log_eps, $normalize
// returns: candidate, loglik, n, probabilities
// mode: read
UNWIND range(0, size($concepts) - 1) AS k
OPTIONAL MATCH (v:Concept {id: $concepts[k]})
OPTIONAL MATCH (v)<-[r:CAUSES]-(u:Concept)
WITH k, 1.0 - coalesce(v.leak, $default_leak) AS noleak,
     collect(CASE WHEN r.status = 'accepted'
                  THEN [u.id, 1.0 - r.p,
                        1.0 - r.p * coalesce($observed[u.id], $priors[u.id], u.leak, $default_leak)] END) AS pa
ORDER BY k
WITH collect([noleak, pa]) AS fam
UNWIND range(0, size($present) - 1) AS i
WITH i, [code IN $cpd[i] | [code >= 0, fam[CASE WHEN code >= 0 THEN code ELSE -code - 1 END]]] AS cl
WITH i,
     [c IN cl | [c[0], 1.0 - c[1][0] * reduce(acc = 1.0, x IN c[1][1] |
         acc * CASE WHEN x[0] IN $present[i] THEN x[1] WHEN x[0] IN $absent[i] THEN 1.0 ELSE x[2] END)]] AS cl,
     [c IN $present[i] WHERE $observed[c] IS NOT NULL | $observed[c]] AS vp,
     [c IN $absent[i] WHERE $observed[c] IS NOT NULL | $observed[c]] AS va
WITH i, [c IN cl | c[1]] AS probabilities, size(cl) + size(vp) + size(va) AS n,
     reduce(acc = 0.0, c IN cl | acc + log(CASE WHEN c[0] THEN CASE WHEN c[1] > $log_eps THEN c[1] ELSE $log_eps END
                                            ELSE CASE WHEN 1.0 - c[1] > $log_eps THEN 1.0 - c[1] ELSE $log_eps END END))
     + reduce(acc = 0.0, q IN vp | acc + log(CASE WHEN q > $log_eps THEN q ELSE $log_eps END))
     + reduce(acc = 0.0, q IN va | acc + log(CASE WHEN 1.0 - q > $log_eps THEN 1.0 - q ELSE $log_eps END)) AS total
RETURN i AS candidate, CASE WHEN $normalize = 'mean' THEN total / n ELSE total END AS loglik, n, probabilities
ORDER BY candidate
