// Node and relationship counts.
// params: none
// returns: concepts, studies, asserts, edges, accepted, proposed, rejected
// mode: read
OPTIONAL MATCH (c:Concept)
WITH count(c) AS concepts
OPTIONAL MATCH (s:Study)
WITH concepts, count(s) AS studies
OPTIONAL MATCH (:Study)-[a:ASSERTS]->(:Concept)
WITH concepts, studies, count(a) AS asserts
OPTIONAL MATCH (:Concept)-[r:CAUSES]->(:Concept)
RETURN concepts, studies, asserts, count(r) AS edges,
       sum(CASE WHEN r.status = 'accepted' THEN 1 ELSE 0 END) AS accepted,
       sum(CASE WHEN r.status = 'proposed' THEN 1 ELSE 0 END) AS proposed,
       sum(CASE WHEN r.status = 'rejected' THEN 1 ELSE 0 END) AS rejected
